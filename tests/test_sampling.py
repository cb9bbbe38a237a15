"""Inverse-CDF sampling draws from the right distribution and never picks a token of probability 0."""

import torch

from charlm.sampling import sample_ids


def test_sample_ids_follows_the_probabilities_and_never_picks_a_zero():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0]]).expand(20_000, -1)
    generator = torch.Generator().manual_seed(0)
    ids = sample_ids(probs, generator)
    assert ids.shape == (20_000,)
    counts = torch.bincount(ids, minlength=6).float() / 20_000
    assert counts[[0, 2, 5]].sum() == 0
    torch.testing.assert_close(counts, probs[0], atol=0.015, rtol=0)


def test_sample_ids_survives_rows_that_do_not_sum_to_one():
    probs = torch.tensor([[0.2, 0.2, 0.0], [1e-30, 0.0, 0.0]])  # unnormalised; a tiny lone survivor
    generator = torch.Generator().manual_seed(3)
    for _ in range(200):
        first, second = sample_ids(probs, generator).tolist()
        assert first in (0, 1) and second == 0
