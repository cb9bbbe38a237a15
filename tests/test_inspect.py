"""Hidden-unit inspection: the step-by-step trace against torch's fused modules, the features against hand-worked
examples, and the command."""

import numpy as np
import pytest
import torch

from charlm import checkpoint
from charlm.config import ModelConfig, TrainConfig
from charlm.errors import CharlmError
from charlm.explore import units
from charlm.model import RNNLM
from charlm.tokenizers import CharTokenizer

TEXT = 'ab "c a"\nb (a) c'


def tiny_model(cell, num_layers=2, hidden_size=5):
    torch.manual_seed(3)
    tokenizer = CharTokenizer('abc .\n"()')
    model = RNNLM(ModelConfig(cell=cell, num_layers=num_layers, hidden_size=hidden_size, embed_size=4, dropout=0.0),
                  tokenizer.vocab_size)
    return model.eval(), tokenizer


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn-relu", "mingru", "minlstm"])
def test_trace_matches_the_fused_module(cell):
    model, tokenizer = tiny_model(cell)
    ids = tokenizer.encode(TEXT).astype(np.int64)
    trace = units.trace(model, tokenizer, ids)
    x = torch.from_numpy(ids).unsqueeze(0)  # (1, T)
    with torch.no_grad():
        _, state = model(x)  # the state of every layer after the last step
        h_n, c_n = state if cell == "lstm" else (state, None)
        assert torch.allclose(trace.h[:, -1], h_n[:, 0], atol=1e-6)
        # every layer at every step: each layer's fused module over the layer below
        layer_input = model.embedding(x)
        for layer in range(model.config.num_layers):
            layer_out, _ = model.layers[layer](layer_input)  # (1, T, H)
            assert torch.allclose(trace.h[layer], layer_out[0], atol=1e-6), layer
            layer_input = layer_out
        if cell == "lstm":
            assert torch.allclose(trace.c[:, -1], c_n[:, 0], atol=1e-6)
            # c at every step: the model fed one token at a time with the carried state
            carried, cs = None, []
            for t in range(len(ids)):
                _, carried = model(x[:, t:t + 1], carried)
                cs.append(carried[1][:, 0])  # (L, H)
            assert torch.allclose(trace.c, torch.stack(cs, dim=1), atol=1e-6)
        else:
            assert trace.c is None


def test_char_features_worked_example():
    text = 'a "b (c)"\nd'
    f = units.char_features(text)
    #   index:             a  ␣  "  b  ␣  (  c  )  "  ⏎  d
    expected = {
        "in_quotes":      [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        "in_parens":      [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
        "line_position":  [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1],
        "after_newline":  [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        "word_position":  [1, 0, 1, 2, 0, 1, 2, 3, 4, 0, 1],
        "is_upper":       [0] * 11,
    }
    assert set(f) == set(units.FEATURES)
    for name, values in expected.items():
        assert f[name].tolist() == values, name


def test_token_features_take_each_tokens_last_character():
    f = units.token_features(["", 'a "', "b", "", '"\n', "c"])  # "" : a token that completes no text yet
    assert f["in_quotes"].tolist() == [0, 1, 1, 1, 0, 0]
    assert f["after_newline"].tolist() == [0, 0, 0, 0, 1, 0]


def test_correlations_match_numpy():
    rng = np.random.default_rng(0)
    states = torch.from_numpy(rng.normal(size=(2, 30, 4)))
    states[1, :, 3] = 0.5  # a constant unit has r 0
    feature = rng.normal(size=30)
    r = units.correlations(states, feature)
    for layer in range(2):
        for unit in range(3):
            assert r[layer, unit] == pytest.approx(np.corrcoef(states[layer, :, unit], feature)[0, 1])
    assert r[1, 3] == 0


def test_rank_units_finds_a_unit_that_is_the_feature():
    tokens = list(TEXT)
    quotes = units.char_features(TEXT)["in_quotes"]
    h = torch.from_numpy(np.random.default_rng(1).normal(size=(2, len(tokens), 6)) * 0.1)
    h[1, :, 4] = torch.from_numpy(1 - 2 * quotes)  # unit 1:4 is -1 inside quotes, +1 outside
    trace = units.Trace(tokens, tokens, h.float(), None)
    best = units.rank_units(trace, "h", "in_quotes", 2)
    assert (best[0].layer, best[0].unit) == (1, 4) and best[0].r == pytest.approx(-1, abs=1e-6)
    assert units.best_feature(trace, "h", 1, 4).feature == "in_quotes"
    with pytest.raises(CharlmError, match="only an LSTM"):
        units.rank_units(trace, "c", "in_quotes", 2)
    with pytest.raises(CharlmError, match="does not vary"):
        units.rank_units(units.Trace(list("abc"), list("abc"), h[:, :3], None), "h", "in_quotes", 2)


@pytest.mark.parametrize("spec, expected", [("3", [(1, 3)]), ("0:2, 1:4 ,4", [(0, 2), (1, 4), (1, 4)])])
def test_parse_units(spec, expected):
    assert units.parse_units(spec, num_layers=2, hidden_size=5) == expected


@pytest.mark.parametrize("spec, message", [("5", "unit 5 does not exist: each layer has units 0–4"),
                                           ("2:1", "layer 2 does not exist"), ("x", "cannot read unit 'x'"),
                                           ("1:", "cannot read unit"), ("-1", "cannot read unit")])
def test_parse_units_errors(spec, message):
    with pytest.raises(CharlmError, match=message):
        units.parse_units(spec, num_layers=2, hidden_size=5)


# ----- the command ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gru") / "run"
    model, tokenizer = tiny_model("gru")
    checkpoint.create_run(run_dir, tokenizer, model.config, TrainConfig(max_steps=1), {"source": "random"}, "test")
    checkpoint.save_weights(run_dir, model, {"step": 0})
    return run_dir


def test_inspect_ranks_features_and_draws_units(invoke, trained_run, tmp_path):
    page = tmp_path / "units.html"
    result = invoke("inspect", trained_run, "--text", "the cat sat on the mat.\na dog sat.", "--html", page)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "units that track each feature (h, Pearson r over 34 tokens)" in out
    for feature in ("line_position", "after_newline", "word_position"):
        assert feature in out
    assert "in_quotes" not in out  # it does not vary over this text
    assert out.count("the cat sat on the mat.⏎\n") == out.count("tracks ") >= 1
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and html.count("background:#") >= 34


def test_inspect_chosen_units_and_cell_state(invoke, trained_run):
    result = invoke("inspect", trained_run, "--text", "the cat\nsat", "--units", "3,0:15", "--state", "c")
    assert result.exit_code == 0, result.output
    assert "layer 0, c[3]" in result.stdout and "layer 0, c[15]" in result.stdout
    result = invoke("inspect", trained_run, "--text", "the cat\nsat", "--feature", "after_newline", "--top", "2")
    assert result.exit_code == 0 and result.stdout.count("layer 0, h[") == 2


def test_plain_heatmap_of_wide_characters_lines_up(invoke, tmp_path):
    run_dir = tmp_path / "run"
    tokenizer = CharTokenizer("어제 나는 공원에서")
    model = RNNLM(ModelConfig(cell="gru", num_layers=1, hidden_size=3, embed_size=2, dropout=0.0), tokenizer.vocab_size)
    checkpoint.create_run(run_dir, tokenizer, model.config, TrainConfig(max_steps=1), {"source": "random"}, "test")
    checkpoint.save_weights(run_dir, model, {"step": 0})
    result = invoke("inspect", run_dir, "--text", "어제 나는 공원에서", "--units", "0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    text = lines.index("어제 나는 공원에서")  # 18 columns: 8 syllables of 2, 2 spaces of 1
    assert len(lines[text + 1]) == 18 and " " not in lines[text + 1]  # every character has a value: no blanks


@pytest.mark.parametrize("cell, named", [("gru", "this model is a GRU:"),
                                         ("rnn", "this model is a vanilla RNN (tanh):"),
                                         ("rnn-relu", "this model is a vanilla RNN (ReLU):")])
def test_state_c_on_a_cell_without_one_names_the_cell(invoke, tmp_path, cell, named):
    run_dir = tmp_path / "run"
    model, tokenizer = tiny_model(cell, num_layers=1, hidden_size=2)
    checkpoint.create_run(run_dir, tokenizer, model.config, TrainConfig(max_steps=1), {"source": "random"}, "test")
    checkpoint.save_weights(run_dir, model, {"step": 0})
    result = invoke("inspect", run_dir, "--text", "ab", "--state", "c")
    assert result.exit_code == 1 and named in result.stderr


def test_every_cell_has_a_name_for_messages():
    from charlm.cli import explore as cli_explore
    from charlm.config import CELLS

    assert set(cli_explore._A_CELL) == set(CELLS)


def test_the_commands_feature_names_are_the_libraries():
    from charlm.cli import explore as cli_explore

    assert cli_explore.FEATURE_NAMES == tuple(units.FEATURES)


@pytest.mark.parametrize("args, message", [
    (["{run}", "--text", "the cat", "--units", "3", "--feature", "is_upper"], "give one of the two"),
    (["{run}", "--text", "the cat", "--units", "16"], "unit 16 does not exist"),
    (["{run}", "--text", "the cat", "--units", "1:0"], "layer 1 does not exist: the model has only layer 0"),
    (["{run}", "--text", "the cat", "--units", "a,b"], "cannot read unit 'a'"),
    (["{run}", "--text", "the cat", "--feature", "in_quotes"], "does not vary over this text"),
    (["{run}", "--text", "the Cat"], "never saw: 'C'"),
    (["{run}", "--text", "t"], "fewer than 2 characters"),
    (["{run}", "{tmp}/missing.txt"], "no file"),
    (["{run}", "--text", "the cat", "--html", "{tmp}/nope/x.html"], "does not exist"),
    (["{run}", "--text", "the cat", "--html", "{tmp}"], "is a folder: give a file name, e.g. --html {tmp}/units.html"),
    (["{gru}", "--text", "ab", "--state", "c"], "--state c needs an LSTM"),
])
def test_bad_input_gives_one_line_error(invoke, trained_run, gru_run, tmp_path, args, message):
    result = invoke("inspect", *[a.format(run=trained_run, gru=gru_run, tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    assert message.format(tmp=tmp_path) in result.stderr and result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_help_ends_with_examples(invoke):
    result = invoke("inspect", "--help")
    assert result.exit_code == 0 and "Examples:" in result.stdout and "charlm inspect checkpoints/" in result.stdout
