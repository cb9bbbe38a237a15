"""The data pipeline against an independent reference: split the whole text, then tokenize each part at once."""

import hashlib
import json
import unicodedata

import pytest

from charlm import corpus, data
from charlm.errors import CorpusError
from charlm.tokenizers import TokenizerSpec

from conftest import char_tokenizer, prepare, split_text

TEXT = "".join(f"Line {i}: the cat sat on mat {i % 7}. 한국어 {'▁' if i % 11 == 0 else ''}\n\n"
               for i in range(300))
TINY_RUN = ["--hidden", "16", "--embed", "8", "--layers", "1", "--batch-size", "4", "--seq-len", "16", "--dropout", "0",
            "--max-steps", "4", "--eval-every", "2", "--no-cache", "--precision", "fp32"]


@pytest.fixture
def small_chunks(monkeypatch):
    """Read in 200-byte chunks, so parts are cut inside chunks and tokenized piece by piece."""
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 200)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_char_level_matches_tokenizing_each_part_at_once(text_file, small_chunks):
    run = prepare(str(text_file), val_fraction=0.1, test_fraction=0.05)
    train, val, test = split_text(TEXT, 0.1, 0.05)
    reference = char_tokenizer(train)
    assert run.tokenizer.chars == reference.chars
    assert run.train_ids.tolist() == reference.encode(train).tolist()
    assert run.val_ids.tolist() == reference.encode(val, unknown="unk").tolist()
    assert run.test_ids.tolist() == reference.encode(test, unknown="unk").tolist()
    assert run.val_chars == len(val) - 1 and run.train_chars == len(train) - 1
    info = run.corpus_info
    assert info["train_sha256"] == sha256(train) and info["val_sha256"] == sha256(val)
    assert info["sha256"] == sha256(TEXT) and info["characters"] == len(TEXT)
    sizes = (info["train_characters"], info["test_characters"], info["val_characters"])
    assert sizes == (len(train), len(test), len(val))


@pytest.mark.parametrize("spec", [TokenizerSpec("byte"), TokenizerSpec("subword", vocab_size=400),
                                  TokenizerSpec("subword", vocab_size=400, model_type="bpe")])
def test_every_level_holds_out_the_same_text(text_file, small_chunks, spec):
    run = prepare(str(text_file), val_fraction=0.1, spec=spec)
    train, val, _ = split_text(TEXT, 0.1)
    tok = run.tokenizer
    assert tok.kind == spec.level
    assert tok.decode(run.train_ids) == train and tok.decode(run.val_ids) == val
    assert run.val_chars == len(val) - tok.count_chars(run.val_ids[:1])


def test_normalised_levels_split_the_text_as_read(text_file):
    composed = unicodedata.normalize("NFC", "가각 " * 500)
    text_file.write_text(composed, encoding="utf-8")
    run = prepare(str(text_file), val_fraction=0.1, spec=TokenizerSpec(normalize="nfd"))
    train, val, _ = split_text(composed, 0.1)
    assert run.tokenizer.vocab_size == 5  # <unk>, space, ᄀ, ᅡ, ᆨ
    assert run.tokenizer.decode(run.train_ids) == train and run.tokenizer.decode(run.val_ids) == val
    assert run.val_chars == len(val) - 1  # characters of the text as read, not of its jamo
    assert len(run.val_ids) > len(val)


def test_separate_validation_file_and_unseen_characters(text_file, tmp_path):
    val_file = tmp_path / "val.txt"
    val_file.write_text("the cat sat on a zebra ☃\n", encoding="utf-8")
    run = prepare(str(text_file), val_fraction=0.1, val_source=str(val_file))
    assert run.tokenizer.chars == char_tokenizer(TEXT).chars  # all of the corpus trains
    assert len(run.train_ids) == len(TEXT) and run.corpus_info["val_source"] == str(val_file)
    assert len(run.warnings) == 1 and "'z' (U+007A)" in run.warnings[0] and "☃" in run.warnings[0]
    assert run.tokenizer.decode(run.val_ids).count("\ufffd") == 4  # z, b, r, ☃ scored as <unk>


def test_too_short_for_validation_warns(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("hihello", encoding="utf-8")
    run = prepare(str(path), val_fraction=0.1)
    assert run.val_ids is None and "validation split is empty" in run.warnings[0]


def test_recorded_split_comes_back_and_changes_are_caught(text_file):
    run = prepare(str(text_file), val_fraction=0.1, test_fraction=0.1)
    train_config = {"val_fraction": 0.1, "test_fraction": 0.1}
    for split_name, ids, chars in (("val", run.val_ids, run.val_chars), ("test", run.test_ids, run.test_chars)):
        again, n_chars = data.drain(data.recorded_split_steps(run.corpus_info, train_config, split_name, run.tokenizer))
        assert again.tolist() == ids.tolist() and n_chars == chars
    text_file.write_text(TEXT.replace("cat", "dog"), encoding="utf-8")
    with pytest.raises(CorpusError, match="has changed since the run was recorded"):
        data.drain(data.recorded_split_steps(run.corpus_info, train_config, "val", run.tokenizer))


def test_korean_char_jamo_and_subword_runs_compare_in_one_table(invoke, tmp_path):
    runs = {"char": [], "jamo": ["--normalize", "nfd"], "subword": ["--level", "subword", "--vocab-size", "700"]}
    for name, options in runs.items():
        result = invoke("train", "kolaw_constitution", "--out", tmp_path / name, *options, *TINY_RUN)
        assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "jamo" / "config.json").read_text())
    assert config["tokenizer"]["vocab_size"] < 100  # Hangul as jamo
    tokenizer_file = json.loads((tmp_path / "subword" / "tokenizer.json").read_text())
    assert tokenizer_file["kind"] == "subword" and tokenizer_file["requested_vocab_size"] == 700
    result = invoke("eval", *(tmp_path / name for name in runs), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["level"] for r in rows] == ["char", "char", "subword"] and rows[1]["normalize"] == "nfd"
    assert len({r["characters"] for r in rows}) == 1  # the same validation text, counted the same way
    assert len({r["tokens"] for r in rows}) == 3
    table = invoke("eval", *(tmp_path / name for name in runs), "--text", "kolaw_constitution", "--unknown", "unk")
    assert table.exit_code == 0 and "bits per character" in table.stdout and "char+nfd" in table.stdout
    sample = invoke("sample", tmp_path / "jamo", "-p", "대한민국", "-n", "20", "--no-stream", "--seed", "1")
    assert sample.exit_code == 0 and sample.stdout.startswith("대한민국")
    assert unicodedata.is_normalized("NFC", sample.stdout)


def test_old_eval_form_and_bad_arguments(invoke, tmp_path, text_file):
    result = invoke("train", text_file, "--out", tmp_path / "run", *TINY_RUN)
    assert result.exit_code == 0, result.output
    old_form = invoke("eval", tmp_path / "run", text_file, "--json")
    assert old_form.exit_code == 0 and json.loads(old_form.stdout)["text"] == str(text_file)
    new_form = json.loads(invoke("eval", tmp_path / "run", "--text", text_file, "--json").stdout)
    assert {k: v for k, v in new_form.items() if "s" not in k} == \
        {k: v for k, v in json.loads(old_form.stdout).items() if "s" not in k}  # all but seconds, tokens_per_s
    mixed = invoke("eval", tmp_path / "run", tmp_path / "run", text_file)
    assert mixed.exit_code == 1 and "pass the text to score with --text" in mixed.stderr
    wrong = invoke("train", text_file, "--vocab-size", "500", "--max-steps", "1")
    assert wrong.exit_code == 2 and "--level subword" in wrong.stderr
