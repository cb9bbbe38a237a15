import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charlm.errors import TokenizerError
from charlm.tokenizer import UNK_ID, CharTokenizer, smallest_uint

MIXED = "Hello,\tworld!\n\n  안녕하세요 — 한국어 😀🎉\r\nend ▁ \x0b"


def test_round_trip_mixed_unicode():
    tok = CharTokenizer.fit(MIXED)
    ids = tok.encode(MIXED)
    assert tok.decode(ids) == MIXED
    assert len(ids) == len(MIXED)  # one id per code point, emoji included


@given(st.text(min_size=1))
def test_round_trip_any_text(text):
    tok = CharTokenizer.fit(text)
    assert tok.decode(tok.encode(text)) == text


def test_hihello_vocabulary_and_ids():
    tok = CharTokenizer.fit("hihello")
    assert tok.vocab_size == 6  # <unk> + e h i l o
    assert [tok.token(i) for i in range(1, 6)] == list("ehilo")
    assert tok.encode("hihello").tolist() == [2, 3, 2, 1, 4, 4, 5]


def test_unknown_characters_are_listed_not_keyerror():
    tok = CharTokenizer.fit("abc")
    with pytest.raises(TokenizerError) as e:
        tok.encode("abxyx")
    assert "'x'" in str(e.value) and "'y'" in str(e.value) and "--unknown" in str(e.value)


def test_unknown_policies():
    tok = CharTokenizer.fit("abc")
    assert tok.encode("axb", unknown="unk").tolist() == [1, UNK_ID, 2]
    assert tok.encode("axb", unknown="skip").tolist() == [1, 2]
    assert tok.decode([1, UNK_ID, 2]) == "a\ufffdb"
    assert tok.unknown_chars("axbyz") == {"x", "y", "z"}


def test_smallest_dtype():
    assert smallest_uint(256) == np.uint8
    assert smallest_uint(257) == np.uint16
    assert smallest_uint(70_000) == np.uint32
    korean = "".join(chr(0xAC00 + i) for i in range(300))
    assert CharTokenizer.fit(korean).encode(korean).dtype == np.uint16


def test_serialisation_round_trip_and_fingerprint():
    tok = CharTokenizer.fit(MIXED)
    again = CharTokenizer.from_dict(tok.to_dict())
    assert again.chars == tok.chars and again.fingerprint() == tok.fingerprint()
    with pytest.raises(TokenizerError):
        CharTokenizer.from_dict({"kind": "char", "chars": "ba"})  # not sorted: edited by hand


def test_decode_rejects_out_of_range_ids():
    tok = CharTokenizer.fit("ab")
    with pytest.raises(TokenizerError):
        tok.decode([5])
