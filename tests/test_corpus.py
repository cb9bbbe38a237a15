import bz2
import gzip
import lzma

import pytest

from charlm import corpus
from charlm.errors import CorpusError


def test_shipped_corpora_by_name():
    names = corpus.shipped_corpora()
    assert {"shakespeare", "hihello"} <= set(names)
    assert corpus.load_text("hihello").text == "hihello"
    assert len(corpus.load_text("shakespeare").text) > 900_000


def test_file_folder_and_compressed(tmp_path):
    (tmp_path / "a.txt").write_text("first\n", encoding="utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.txt").write_text("second 한국어\n", encoding="utf-8")
    (sub / "skip.md").write_text("not read", encoding="utf-8")
    assert corpus.load_text(str(tmp_path / "a.txt")).text == "first\n"
    loaded = corpus.load_text(str(tmp_path))
    assert loaded.text == "first\n\nsecond 한국어\n" and loaded.files == 2
    for suffix, opener in ((".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)):
        path = tmp_path / f"c.txt{suffix}"
        with opener(path, "wb") as f:
            f.write("압축 text\n".encode())
        assert corpus.load_text(str(path)).text == "압축 text\n"


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"  \n\t\n", "only whitespace"),
    (b"abc\x00def", "binary.*offset 3"),
    (b"ok \xff\xfe bad", "not valid UTF-8.*offset 3"),
])
def test_bad_files_get_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        corpus.load_text(str(path))


def test_invalid_utf8_can_be_replaced(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok \xff bad")
    assert corpus.load_text(str(path), encoding_errors="replace").text == "ok \ufffd bad"
    assert corpus.load_text(str(path), encoding_errors="ignore").text == "ok  bad"


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(CorpusError, match="no file, folder or shipped corpus"):
        corpus.load_text(str(tmp_path / "nope.txt"))
    with pytest.raises(CorpusError, match="no files matching"):
        corpus.load_text(str(tmp_path))


def test_split_is_contiguous_with_validation_last():
    text = "".join(chr(65 + i % 26) for i in range(1000))
    train, val, test = corpus.split(text, 0.1, 0.05)
    assert (len(train), len(test), len(val)) == (850, 50, 100)
    assert train + test + val == text
    assert corpus.split(text, 0.0) == (text, "", "")
