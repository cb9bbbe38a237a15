import bz2
import gzip
import lzma

import pytest

from charlm import corpus
from charlm.errors import CorpusError

from conftest import split_text


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
    train, val, test = split_text(text, 0.1, 0.05)
    assert (len(train), len(test), len(val)) == (850, 50, 100)
    assert train + test + val == text
    assert split_text(text, 0.0) == (text, "", "")


# ----- several inputs, globs and chunked reading ------------------------------------------------------------


def test_several_inputs_and_glob_are_joined_in_order(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\n", encoding="utf-8")
    docs = tmp_path / "docs"
    (docs / "deep").mkdir(parents=True)
    (docs / "x.md").write_text("# ex\n", encoding="utf-8")
    (docs / "deep" / "y.md").write_text("why\n", encoding="utf-8")
    (docs / "z.txt").write_text("not markdown\n", encoding="utf-8")
    with gzip.open(tmp_path / "c.txt.gz", "wb") as f:
        f.write("압축\n".encode())
    source = corpus.Source((str(tmp_path / "a.txt"), str(docs), str(tmp_path / "c.txt.gz")), glob="*.md")
    loaded = corpus.load_text(source)
    assert loaded.text == "alpha\n\nwhy\n\n# ex\n\n압축\n" and loaded.files == 4  # docs/deep/y.md sorts first
    assert corpus.load_text(corpus.Source((str(docs),))).text == "not markdown\n"
    assert corpus.Source.from_dict(source.to_dict()) == source


def test_old_corpus_info_still_reads():
    assert corpus.Source.from_dict({"source": "hihello", "encoding_errors": "replace"}) == \
        corpus.Source(("hihello",), encoding_errors="replace")


@pytest.mark.parametrize("suffix, opener", [("", open), (".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)])
def test_chunks_end_at_line_breaks_and_join_back_exactly(tmp_path, suffix, opener):
    text = "".join(f"line {i} ünï 한글 {'x' * (i % 37)}\n" for i in range(2000)) + "no newline at the end"
    path = tmp_path / f"big.txt{suffix}"
    with opener(path, "wb") as f:
        f.write(text.encode())
    chunks = list(corpus.stream(str(path), chunk_bytes=1000))
    assert len(chunks) > 50 and "".join(c.text for c in chunks) == text
    assert all(c.text.endswith("\n") for c in chunks[:-1])
    assert all(bytes(c.data) == c.text.encode() for c in chunks)
    assert chunks[-1].done == path.stat().st_size == chunks[-1].total


def test_a_very_long_line_is_cut_between_characters(tmp_path):
    text = "한" * 5000 + "\nend"  # 15,000 bytes without a line break
    path = tmp_path / "long.txt"
    path.write_text(text, encoding="utf-8")
    chunks = list(corpus.stream(str(path), chunk_bytes=1000))
    assert len(chunks) > 2 and "".join(c.text for c in chunks) == text


def test_errors_found_late_in_a_file_give_the_right_offset(tmp_path):
    path = tmp_path / "late.txt"
    path.write_bytes(b"ok line\n" * 1000 + b"bad \xff here\n")
    with pytest.raises(CorpusError, match="offset 8004"):
        list(corpus.stream(str(path), chunk_bytes=100))
    path.write_bytes(b"ok line\n" * 1000 + b"nul \x00 here\n")
    with pytest.raises(CorpusError, match="binary.*offset 8004"):
        list(corpus.stream(str(path), chunk_bytes=100))


def test_split_sizes_cut_train_then_test_then_val():
    assert corpus.split_sizes(1000, 0.1, 0.05) == (850, 50, 100)
    text = "".join(chr(0x41 + i % 26) for i in range(997))
    n_train, n_test, n_val = corpus.split_sizes(len(text), 0.1, 0.05)
    assert (n_train, n_test, n_val) == (849, 49, 99) and n_train + n_test + n_val == len(text)  # every character once
    with pytest.raises(CorpusError, match="--val-fraction"):
        corpus.split_sizes(2, 0.5)
    with pytest.raises(CorpusError, match="has 1 character.*pass a longer corpus"):  # no validation part to shrink
        corpus.split_sizes(1, 0.1)
