"""Subword level: sentencepiece set up to be lossless, checked against the text itself."""

import json
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm import corpus
from charlm.errors import TokenizerError
from charlm.tokenizers import tokenizer_from_dict
from charlm.tokenizers.subword import MAX_SENTENCE_CHARS, SPACE, SubwordFitter

from conftest import prepare, subword_tokenizer

TRAIN = corpus.load_text("kolaw_constitution").text + "The cat sat on the mat.\tTabs\tand  double  spaces.\n" * 50
TRICKY = ["", " ", "  lead and trail  ", "a\tb\t\tc", "\n\n\nblank\n\n", "literal ▁ and ▁▁ and ▁x▁",
          "😀🎉 emoji", "대한민국 헌법 제1조", "\r\nwindows\r\n", "\x00\x01 control",
          "mixed 한국어 ▁ 😀\n\t "]


@pytest.fixture(scope="module")
def unigram():
    return subword_tokenizer(TRAIN, vocab_size=1000, model_type="unigram")


@pytest.fixture(scope="module")
def bpe():
    return subword_tokenizer(TRAIN, vocab_size=1000, model_type="bpe")


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_texts_round_trip_exactly(unigram, bpe, text):
    for tok in (unigram, bpe):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.count_chars(ids) == len(text)
        assert ids.dtype == np.uint16  # 1000 pieces need two bytes


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
       | st.text(alphabet=" \t\n▁가나다ab😀", max_size=40))
def test_round_trip_any_text(unigram, text):
    ids = unigram.encode(text)
    assert unigram.decode(ids) == text
    assert unigram.count_chars(ids) == len(text)
    decoder = unigram.incremental_decoder()
    assert "".join(decoder.feed(int(i)) for i in ids) + decoder.flush() == text


def test_literal_meta_symbol_is_spelled_in_bytes(unigram):
    # sentencepiece would decode a literal "▁" as a space; charlm spells it as its three UTF-8 bytes
    ids = unigram.encode(SPACE)
    assert [unigram.token(int(i)) for i in ids] == ["<0xE2>", "<0x96>", "<0x81>"]
    assert unigram.decode(ids) == SPACE and unigram.decode(unigram.encode(" ")) == " "


def test_newline_and_tab_are_pieces_of_their_own(unigram):
    assert [unigram.token(int(i)) for i in unigram.encode("\n\t")] == ["\n", "\t"]
    assert "\n" in unigram.chars  # runner.default_prompt relies on it


def test_unseen_characters_fall_back_to_bytes(unigram):
    ids = unigram.encode("𝔘")  # never in the training text
    assert len(ids) == 4 and unigram.unknown_chars("𝔘") == set() and unigram.unk_id not in ids.tolist()


def test_streaming_decoder_holds_incomplete_utf8(unigram):
    decoder = unigram.incremental_decoder()
    out = [decoder.feed(int(i)) for i in unigram.encode("😀")]
    assert out == ["", "", "", "😀"]


def test_serialisation_is_one_json_object_with_its_settings(unigram):
    data = json.loads(json.dumps(unigram.to_dict()))
    assert data["kind"] == "subword" and data["model_type"] == "unigram" and data["normalize"] == "none"
    assert data["vocab_size"] == 1000 and data["requested_vocab_size"] == 1000
    again = tokenizer_from_dict(data)
    assert again.fingerprint() == unigram.fingerprint()
    assert again.encode(TRICKY[-1]).tolist() == unigram.encode(TRICKY[-1]).tolist()
    with pytest.raises(TokenizerError, match="corrupted"):
        tokenizer_from_dict({**data, "model": "bm90IGEgbW9kZWw="})


def test_vocabulary_too_large_for_a_small_corpus_is_soft_and_said(tmp_path):
    tok = subword_tokenizer(corpus.load_text("kolaw_constitution").text, vocab_size=8000)
    assert 259 < tok.vocab_size < 8000  # fewer pieces instead of an error
    from charlm.tokenizers import TokenizerSpec

    run = prepare("kolaw_constitution", 0.1, spec=TokenizerSpec(level="subword", vocab_size=8000), cache_dir=None)
    assert f"the training text gave {run.tokenizer.vocab_size:,} subword pieces, fewer than the --vocab-size 8,000" \
        in " ".join(run.notes)


def test_vocabulary_too_small_says_how_large_it_must_be():
    with pytest.raises(TokenizerError, match=r"--vocab-size 300 is too small.*pass --vocab-size \d+ or more"):
        subword_tokenizer(corpus.load_text("kolaw_constitution").text, vocab_size=300)


def test_long_lines_are_cut_so_sentencepiece_does_not_skip_them():
    line = "abcde fghij " * 2000  # 24,000 characters, no newline
    fitter = SubwordFitter(400, "bpe", "none")
    fitter.add(line)
    assert max(len(s) for s in fitter.sentences) <= MAX_SENTENCE_CHARS and "".join(fitter.sentences) == line
    tok = fitter.finish()
    assert len(tok.encode(line)) < len(line) / 3  # it learnt the words, so the line was not skipped


def test_nfd_subwords_recompose_on_decode():
    text = corpus.load_text("kolaw_constitution").text
    tok = subword_tokenizer(text, vocab_size=600, normalize="nfd")
    sample = "대한민국은 민주공화국이다.\n"
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample and tok.count_chars(ids) == len(sample)
    assert unicodedata.is_normalized("NFD", "".join(tok.token(int(i)) for i in ids if int(i) > 258))
