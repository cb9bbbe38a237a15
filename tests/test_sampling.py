"""Inverse-CDF sampling draws from the right distribution and never picks a token of probability 0; the unknown
token is never generated."""

import pytest
import torch

from charlm.config import ModelConfig, SampleConfig
from charlm.model import RNNLM
from charlm.sampling import filter_logits, generate, sample_ids


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


def test_a_banned_token_gets_no_probability_under_any_filter():
    logits = torch.tensor([[5.0, 1.0, 0.5, -1.0]])
    for config in (SampleConfig(temperature=0), SampleConfig(temperature=1.0), SampleConfig(top_k=2),
                   SampleConfig(top_p=0.5)):
        probs = filter_logits(logits, config, banned_id=0)
        assert probs[0, 0] == 0 and probs.sum().item() == pytest.approx(1.0)
    assert logits[0, 0] == 5.0  # the caller's logits are left alone


def test_top_k_keeps_exactly_k_tokens_with_their_relative_odds():
    logits = torch.tensor([[2.0, 1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])  # ties at the k-th place
    probs = filter_logits(logits, SampleConfig(temperature=1.0, top_k=2))
    assert ((probs > 0).sum(-1) == 2).all()
    assert probs[0, 0] / probs[0][probs[0] > 0][1] == pytest.approx(torch.e)  # e^2 : e^1, renormalised
    assert probs.sum(-1).tolist() == pytest.approx([1.0, 1.0])


def test_generate_never_emits_the_banned_token():
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(hidden_size=8, embed_size=4), vocab_size=5).eval()
    with torch.no_grad():
        model.decoder.bias[0] = 50.0
    steps = generate(model, torch.tensor([1, 2]), 50, SampleConfig(temperature=1.0), num_samples=4, banned_id=0)
    ids = torch.stack(list(steps))  # (50, 4)
    assert ids.shape == (50, 4) and (ids != 0).all()


def test_sample_ids_at_the_ends_of_the_uniform_range(monkeypatch):
    probs = torch.tensor([[0.0, 0.7, 0.3, 0.0]])
    for u in (0.0, 1.0 - 2**-24):  # torch.rand's smallest and largest float32 values
        monkeypatch.setattr(torch, "rand", lambda *shape, u=u, **kw: torch.full(shape, u))
        assert sample_ids(probs).item() in (1, 2)


def test_the_frequency_penalty_lowers_each_logit_by_its_count():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    recent = torch.tensor([[3.0, 0.0, 1.0, 0.0]])
    config = SampleConfig(temperature=0.7, frequency_penalty=0.25)
    expected = torch.softmax((logits - 0.25 * recent) / 0.7, dim=-1)
    torch.testing.assert_close(filter_logits(logits, config, recent=recent), expected)
    torch.testing.assert_close(filter_logits(logits, SampleConfig(temperature=0.7), recent=recent),
                               torch.softmax(logits / 0.7, dim=-1))  # no penalty: the counts do nothing


def test_recent_tokens_count_only_the_window():
    from charlm.sampling import RecentTokens

    recent = RecentTokens(2, 5, window=3, prompt_ids=torch.tensor([4, 4, 1, 2]))  # the last 3: 4, 1, 2
    assert recent.counts.tolist() == [[0, 1, 1, 0, 1]] * 2
    recent.add(torch.tensor([3, 1]))  # 4 leaves the window
    assert recent.counts.tolist() == [[0, 1, 1, 1, 0], [0, 2, 1, 0, 0]]


def test_a_greedy_loop_is_broken_after_as_many_repeats_as_the_margin_allows():
    """A model that prefers token 1 by 1.0 nats everywhere: greedy writes it forever; a penalty of 0.3 lets it
    repeat while its lead lasts (four times: 1.0 - 4 × 0.3 < 0), then another token takes over."""
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(num_layers=1, hidden_size=4, embed_size=3, dropout=0.0), vocab_size=4)
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.copy_(torch.tensor([-5.0, 1.0, 0.0, -5.0]))
    prompt = torch.tensor([0])
    plain = torch.cat(list(generate(model, prompt, 8, SampleConfig(temperature=0)))).tolist()
    assert plain == [1] * 8
    broken = torch.cat(list(generate(model, prompt, 8, SampleConfig(temperature=0, frequency_penalty=0.3)))).tolist()
    assert broken[:5] == [1, 1, 1, 1, 2] and 2 in broken[5:]


def test_penalty_settings_are_checked():
    with pytest.raises(Exception, match="--frequency-penalty must be 0"):
        SampleConfig(frequency_penalty=-0.1)
    with pytest.raises(Exception, match="--penalty-window must be at least 1"):
        SampleConfig(penalty_window=0)
