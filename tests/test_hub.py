"""Tables through Hugging Face `datasets` (local files only: the hub is unreachable in tests)."""

import json
import time

import pytest

from charlm import corpus, hub
from charlm.errors import CorpusError

ROWS = [{"id": 1, "body": "first row\nwith a line break"}, {"id": 2, "body": "둘째 줄 😀"},
        {"id": 3, "body": ""}, {"id": 4, "body": "  spaces kept  "}]
JOINED = "first row\nwith a line break\n둘째 줄 😀\n\n  spaces kept  "


@pytest.fixture(autouse=True)
def datasets_cache_in_tmp(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return path


def test_jsonl_rows_keep_their_line_breaks(jsonl):
    assert list(hub.iter_texts(jsonl, text_column="body")) == [r["body"] for r in ROWS]
    assert corpus.load_text(corpus.Source((str(jsonl),), text_column="body")).text == JOINED


def test_parquet_and_csv_read_the_same_text(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": [r["id"] for r in ROWS], "body": [r["body"] for r in ROWS]}), parquet)
    csv = tmp_path / "rows.csv"
    csv.write_text("id,body\n1,plain\n2,\"quoted, with comma\"\n", encoding="utf-8")
    assert corpus.load_text(corpus.Source((str(parquet),), text_column="body")).text == JOINED
    assert corpus.load_text(corpus.Source((str(csv),), text_column="body")).text == "plain\nquoted, with comma"


def test_rows_stream_in_chunks(jsonl, tmp_path):
    big = tmp_path / "many.jsonl"
    big.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(3000)), encoding="utf-8")
    chunks = list(corpus.stream(str(big), chunk_bytes=2000))
    assert len(chunks) > 5 and "".join(c.text for c in chunks) == "\n".join(f"row {i}" for i in range(3000))


def test_missing_or_non_text_column_is_named(jsonl):
    with pytest.raises(CorpusError, match=r"no column 'text' \(columns: id, body\): pass --text-column"):
        corpus.load_text(str(jsonl))
    with pytest.raises(CorpusError, match="holds int, not text"):
        corpus.load_text(corpus.Source((str(jsonl),), text_column="id"))


def test_a_malformed_table_file_says_what_is_wrong_in_one_line(tmp_path, capfd):
    bad = tmp_path / "bad.json"
    bad.write_text('{"text": "abc"\n{broken', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"cannot load .*bad\.json \(ArrowInvalid: JSON parse error"):
        corpus.load_text(str(bad))
    assert capfd.readouterr().err == ""  # datasets' own error log stays quiet: the message carries the reason


def test_unreachable_hub_fails_fast_with_one_clear_line(invoke, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    with pytest.raises(CorpusError, match="hub is unreachable.*pass the local file instead"):
        corpus.load_text("hf:wikitext:wikitext-2-raw-v1")
    assert time.monotonic() - start < hub.PROBE_SECONDS + 1
    result = invoke("train", "hf:wikitext:wikitext-2-raw-v1", "--split", "train", "--max-steps", "1")
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: the Hugging Face hub is unreachable")
    assert "Traceback" not in result.output


def test_hub_names_parse():
    assert hub.parse_hub_name("hf:wikitext:wikitext-2-raw-v1") == ("wikitext", "wikitext-2-raw-v1")
    assert hub.parse_hub_name("hf:user/data") == ("user/data", None)
    with pytest.raises(CorpusError, match="names no dataset"):
        hub.parse_hub_name("hf:")
    assert hub.is_table_file("a/b.jsonl") and hub.is_table_file("x.json.gz") and not hub.is_table_file("notes.txt")
