"""Pure functions from summed negative log-likelihood to the figures users compare.

Loss is in nats per token. Bits per character divides the *total* NLL in bits by
the number of characters evaluated, so char, byte and subword models compare
fairly on the same text.
"""

from __future__ import annotations

import math

LN2 = math.log(2.0)


def perplexity(mean_nll: float) -> float:
    """exp(mean NLL in nats per token); inf instead of an OverflowError for a hopeless model."""
    return math.exp(mean_nll) if mean_nll < 700 else math.inf


def bits(nll_nats: float) -> float:
    return nll_nats / LN2


def bits_per_char(total_nll_nats: float, n_chars: int) -> float:
    """Total NLL in bits divided by the number of characters it covers."""
    return bits(total_nll_nats) / n_chars if n_chars else math.nan
