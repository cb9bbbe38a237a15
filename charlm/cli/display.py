"""Text and colour for people to look at: visible tokens, colour scales, heatmaps (rich, plain or HTML) and
a self-contained HTML page. Shared by the REPL, ``sample``, ``score`` and ``inspect``.

A heatmap is a list of cells, one per token (or character), each with a value
and the colour that value maps to on a scale::

    text   t    h    e    ␣    c    a    t
    value  nan  1.2  0.3  0.9  5.1  2.2  0.1      bits (score) or activation (inspect)
    rgb    –    ▒    ░    ░    █    ▓    ░        nan → no colour
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from dataclasses import dataclass

RGB = tuple[int, int, int]
_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+(?: of [\d,]+)?$")
VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍", "\x7f": "␡", "\u00a0": "⍽"}
# ColorBrewer YlOrRd (sequential, for surprisal) and RdBu reversed (diverging, for activations).
SEQUENTIAL: list[RGB] = [(255, 255, 204), (254, 217, 118), (253, 141, 60), (227, 26, 28), (128, 0, 38)]
DIVERGING: list[RGB] = [(33, 102, 172), (146, 197, 222), (247, 247, 247), (244, 165, 130), (178, 24, 43)]


def visible(token: str) -> str:
    """Token text with invisible characters drawn: space ␣, newline ⏎, tab ⇥, other controls as ␀…␟."""
    return "".join(VISIBLE.get(ch) or (chr(0x2400 + ord(ch)) if ord(ch) < 0x20 else ch) for ch in token)


def inline(text: str) -> str:
    """Text for a heatmap: a newline drawn as ⏎ and kept (so lines stay lines), other controls drawn (⇥ ␍ …)."""
    return "".join("⏎\n" if ch == "\n" else visible(ch) if ord(ch) < 0x20 or ch == "\x7f" else ch for ch in text)


def for_terminal(text: str) -> str:
    """Generated text safe to write to a terminal: newlines and tabs kept, every other control character
    (ESC, carriage return, C1 …) drawn as a picture (␛ ␍ …) so that it cannot move the cursor or change colours."""
    if text.isprintable():
        return text
    return "".join(ch if ch in "\n\t" or unicodedata.category(ch) != "Cc" else
                   chr(0x2400 + ord(ch)) if ord(ch) < 0x20 else "\u2421" if ch == "\x7f" else "\ufffd" for ch in text)


# ----- colour scales ----------------------------------------------------------------------------------------


def _interpolate(stops: list[RGB], x: float) -> RGB:
    """x in [0, 1] → a colour between evenly spaced stops."""
    x = min(max(x, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    frac = x - i
    return tuple(round(a + (b - a) * frac) for a, b in zip(stops[i], stops[i + 1]))  # type: ignore[return-value]


def sequential(value: float, vmax: float) -> RGB | None:
    """0 … vmax → pale yellow … dark red (values above vmax saturate); NaN → None."""
    if math.isnan(value):
        return None
    return _interpolate(SEQUENTIAL, value / vmax)


def diverging(value: float, vmax: float) -> RGB | None:
    """-vmax … 0 … +vmax → blue … white … red; NaN → None."""
    if math.isnan(value):
        return None
    return _interpolate(DIVERGING, 0.5 + 0.5 * value / vmax)


def ink(background: RGB) -> RGB:
    """Black or white text, whichever reads better on ``background`` (relative luminance)."""
    r, g, b = background
    return (0, 0, 0) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 else (255, 255, 255)


def hex_colour(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


# ----- heatmaps ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One coloured piece of a heatmap."""

    text: str  # the token's own text (newlines as they are)
    value: float  # NaN: no value (e.g. the first token, which nothing predicts)
    rgb: RGB | None  # background colour; None = none
    note: str  # tooltip, e.g. "'e' 3.21 bits"


def cells(pieces: list[str], values, scale, vmax: float, unit: str) -> list[Cell]:
    """Pieces of text and their values (same length) → cells coloured by ``scale`` (sequential or diverging)."""
    out = []
    for piece, value in zip(pieces, values):
        value = float(value)
        note = f"{visible(piece)!r}: " + ("no prediction" if math.isnan(value) else f"{value:+.3f} {unit}".lstrip("+"))
        out.append(Cell(piece, value, scale(value, vmax), note))
    return out


def legend_cells(scale, vmin: float, vmax: float, steps: int = 16) -> list[Cell]:
    """A colour bar from vmin to vmax in ``steps`` blank cells."""
    values = [vmin + (vmax - vmin) * i / (steps - 1) for i in range(steps)]
    return [Cell(" ", v, scale(v, max(abs(vmin), abs(vmax))), f"{v:.3g}") for v in values]


LEVELS = "▁▂▃▄▅▆▇█"


def columns(text: str) -> int:
    """Terminal columns ``text`` takes: East Asian wide and fullwidth characters 2, combining marks 0, others 1.

    Ambiguous-width characters (é, ─) count 1, as in a Western terminal.
    """
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def plain_heatmap(heat: list[Cell], vmin: float, vmax: float) -> str:
    """A heatmap without colour: each line of text, then a line with one level glyph ▁…█ under each character.

        abc cab.⏎        the text (newlines drawn as ⏎)
         ▅▅▄▅▃▆▁▅        vmin → ▁ … vmax → █; no value → blank

    For pipes and terminals without colour. The glyphs under a character fill
    its terminal width (``columns``), so a wide character gets two::

        어제 나는        each syllable takes 2 columns
        ▄▄▅▅▂▃▃▆▆        so does its bar; a combining mark adds none
    """
    text_lines, level_lines = [""], [""]
    for cell in heat:
        for ch in cell.text:
            shown = "⏎" if ch == "\n" else visible(ch) if ord(ch) < 0x20 or ch == "\x7f" else ch
            if math.isnan(cell.value):
                glyph = " "
            else:
                x = (min(max(cell.value, vmin), vmax) - vmin) / (vmax - vmin)
                glyph = LEVELS[min(int(x * len(LEVELS)), len(LEVELS) - 1)]
            text_lines[-1] += shown
            level_lines[-1] += glyph * columns(shown)
            if ch == "\n":
                text_lines.append("")
                level_lines.append("")
    if not text_lines[-1]:
        text_lines.pop(), level_lines.pop()
    return "\n".join(f"{t}\n{g.rstrip()}" for t, g in zip(text_lines, level_lines))


# ----- HTML -------------------------------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.05em; margin-top: 1.6em; }}
.map {{ font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; line-height: 1.5;
        border: 1px solid #ddd; padding: 0.8em; }}
.map span {{ border-radius: 2px; }}
.legend span {{ display: inline-block; width: 1.4em; height: 1.1em; vertical-align: middle; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 0.15em 0.8em; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""


def html_cells(heat: list[Cell]) -> str:
    """Cells as <span>s with background colours and tooltips; the text keeps its newlines (pre-wrap)."""
    parts = []
    for cell in heat:
        text = html.escape(inline(cell.text))
        if cell.rgb is None:
            parts.append(f'<span title="{html.escape(cell.note)}">{text}</span>')
        else:
            style = f"background:{hex_colour(cell.rgb)};color:{hex_colour(ink(cell.rgb))}"
            parts.append(f'<span style="{style}" title="{html.escape(cell.note)}">{text}</span>')
    return "".join(parts)


def html_table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> str:
    """Rows of strings as a table; cells that read as numbers are right-aligned."""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f'<td{" class=num" if _NUMBER.match(v) else ""}>{html.escape(v)}</td>'
                                    for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def html_page(title: str, sections: list[tuple[str, str]]) -> str:
    """A self-contained page (inline CSS, no scripts, no external files): sections of (heading, inner HTML)."""
    body = "\n".join((f"<h2>{html.escape(heading)}</h2>\n" if heading else "") + inner for heading, inner in sections)
    return _PAGE.format(title=html.escape(title), body=body)


def html_heatmap(heat: list[Cell]) -> str:
    return f'<div class="map">{html_cells(heat)}</div>'


def html_legend(legend: list[Cell], low: str, high: str) -> str:
    return f'<p class="legend">{html.escape(low)} {html_cells(legend)} {html.escape(high)}</p>'


# ----- on the terminal --------------------------------------------------------------------------------------


def rich_heatmap(heat: list[Cell]):
    """Cells → rich Text with coloured backgrounds; newlines drawn as ⏎ and kept."""
    from rich.color import Color
    from rich.style import Style
    from rich.text import Text

    text = Text()
    for cell in heat:
        shown = inline(cell.text)
        if cell.rgb is None:
            text.append(shown, style="dim")
            continue
        style = Style(bgcolor=Color.from_rgb(*cell.rgb), color=Color.from_rgb(*ink(cell.rgb)))
        body, newline = (shown[:-1], "\n") if shown.endswith("\n") else (shown, "")
        text.append(body, style=style)
        text.append(newline)
    return text


def print_heatmap(heat: list[Cell], vmin: float, vmax: float) -> None:
    """Coloured backgrounds where stdout shows colour; otherwise (a pipe, NO_COLOR, a dumb terminal) the text
    with a line of level glyphs under each line."""
    from charlm.cli import console

    if console.colour():
        console.out.print(rich_heatmap(heat))
    else:
        console.out.print(plain_heatmap(heat, vmin, vmax), markup=False, highlight=False)


def print_legend(scale, low: float, high: float, low_label: str, high_label: str) -> None:
    """The colour scale from ``low`` to ``high``, or the glyph scale where there is no colour."""
    from rich.text import Text

    from charlm.cli import console

    if not console.colour():
        console.out.print(f"{LEVELS[0]} {low_label} … {LEVELS[-1]} {high_label}", markup=False, highlight=False)
        return
    bar = rich_heatmap(legend_cells(scale, low, high))
    console.out.print(Text(f"{low_label} ").append_text(bar).append(f" {high_label}"))
