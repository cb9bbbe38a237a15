import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charlm.errors import TokenizerError
from charlm.tokenizers import CharTokenizer
from charlm.tokenizers.char import UNK_ID
from charlm.tokenizers.text import smallest_uint

from conftest import char_tokenizer

MIXED = "Hello,\tworld!\n\n  안녕하세요 — 한국어 😀🎉\r\nend ▁ \x0b"


def test_round_trip_mixed_unicode():
    tok = char_tokenizer(MIXED)
    ids = tok.encode(MIXED)
    assert tok.decode(ids) == MIXED
    assert len(ids) == len(MIXED)  # one id per code point, emoji included


@given(st.text(min_size=1))
def test_round_trip_any_text(text):
    tok = char_tokenizer(text)
    assert tok.decode(tok.encode(text)) == text


def test_hihello_vocabulary_and_ids():
    tok = char_tokenizer("hihello")
    assert tok.vocab_size == 6  # <unk> + e h i l o
    assert [tok.token(i) for i in range(1, 6)] == list("ehilo")
    assert tok.encode("hihello").tolist() == [2, 3, 2, 1, 4, 4, 5]


def test_unknown_characters_are_listed_not_keyerror():
    tok = char_tokenizer("abc")
    with pytest.raises(TokenizerError) as e:
        tok.encode("abxyx")
    assert "'x'" in str(e.value) and "'y'" in str(e.value) and "--unknown" in str(e.value)


def test_unknown_policies():
    tok = char_tokenizer("abc")
    assert tok.encode("axb", unknown="unk").tolist() == [1, UNK_ID, 2]
    assert tok.encode("axb", unknown="skip").tolist() == [1, 2]
    assert tok.decode([1, UNK_ID, 2]) == "a\ufffdb"
    assert tok.unknown_chars("axbyz") == {"x", "y", "z"}


def test_smallest_dtype():
    assert smallest_uint(256) == np.uint8
    assert smallest_uint(257) == np.uint16
    assert smallest_uint(70_000) == np.uint32
    korean = "".join(chr(0xAC00 + i) for i in range(300))
    assert char_tokenizer(korean).encode(korean).dtype == np.uint16


def test_serialisation_round_trip_and_fingerprint():
    tok = char_tokenizer(MIXED)
    again = CharTokenizer.from_dict(tok.to_dict())
    assert again.chars == tok.chars and again.fingerprint() == tok.fingerprint()
    with pytest.raises(TokenizerError):
        CharTokenizer.from_dict({"kind": "char", "chars": "ba"})  # not sorted: edited by hand


def test_decode_rejects_out_of_range_ids():
    tok = char_tokenizer("ab")
    with pytest.raises(TokenizerError):
        tok.decode([5])


# ----- fast paths against a per-character reference ---------------------------------------------------------

import unicodedata  # noqa: E402

from charlm import corpus  # noqa: E402
from charlm.tokenizers import ByteTokenizer, TokenizerSpec, tokenizer_from_dict  # noqa: E402
from charlm.tokenizers.char import CharFitter  # noqa: E402


def reference_ids(tok, text):
    """One dict lookup per character: what the vectorised encoder must reproduce."""
    index = {c: i + 1 for i, c in enumerate(tok.chars)}
    return [index.get(c, UNK_ID) for c in text]


@pytest.mark.parametrize("train", ["hihello", "abc é ÿ\n" * 3, "".join(map(chr, range(32, 600))), MIXED])
def test_encode_matches_a_per_character_lookup(train):
    tok = char_tokenizer(train)
    for text in (train, train[::-1] + "zzé€😀", "plain ascii"):
        assert tok.encode(text, unknown="unk").tolist() == reference_ids(tok, text)


@given(st.text(max_size=40), st.text(max_size=40))
def test_fitter_positions_give_the_vocabulary_of_a_prefix(a, b):
    fitter = CharFitter()
    fitter.add(a, 0)
    fitter.add(b, len(a))
    text = a + b
    for cut in {0, len(a) // 2, len(a), len(text)}:
        if cut == 0:
            continue
        assert fitter.finish(before=cut).chars == "".join(sorted(set(text[:cut])))


# ----- byte level -------------------------------------------------------------------------------------------


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_byte_round_trip_any_text(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids.dtype == np.uint8 and ids.tobytes() == text.encode("utf-8")
    assert tok.decode(ids) == text and tok.count_chars(ids) == len(text)
    decoder = tok.incremental_decoder()
    assert "".join(decoder.feed(int(i)) for i in ids) + decoder.flush() == text


def test_byte_level_has_256_symbols_and_no_unknowns():
    tok = ByteTokenizer.fit("anything")
    assert tok.vocab_size == 256 and tok.unknown_chars("😀 never seen") == set()
    assert tok.token(ord("a")) == "a" and tok.token(0xE2) == "<0xE2>" and "\n" in tok.chars
    assert tokenizer_from_dict(tok.to_dict()).fingerprint() == tok.fingerprint()


# ----- Unicode normalisation --------------------------------------------------------------------------------


@pytest.mark.parametrize("form, shown", [("nfc", "NFC"), ("nfkc", "NFKC"), ("nfd", "NFC")])
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
def test_normalised_round_trip_gives_the_normal_form(form, shown, text):
    for tok in (char_tokenizer(text, normalize=form), ByteTokenizer(form)):
        ids = tok.encode(text)
        assert tok.decode(ids) == unicodedata.normalize(shown, text)
        assert tok.count_chars(ids) == len(tok.decode(ids))
        decoder = tok.incremental_decoder()
        assert "".join(decoder.feed(int(i)) for i in ids) + decoder.flush() == tok.decode(ids)


def test_nfd_turns_a_korean_vocabulary_into_jamo():
    text = corpus.load_text("kolaw_constitution").text
    syllables, jamo = char_tokenizer(text), char_tokenizer(text, normalize="nfd")
    assert syllables.vocab_size > 350 and jamo.vocab_size < 100
    ids = jamo.encode("대한민국")
    assert len(ids) == 11 and jamo.decode(ids) == "대한민국"  # 대 = ᄃ+ᅢ, 한 = ᄒ+ᅡ+ᆫ, 민, 국: 2+3+3+3
    assert jamo.to_dict()["normalize"] == "nfd" and "normalize" not in syllables.to_dict()
    decoder = jamo.incremental_decoder()
    shown = [decoder.feed(int(i)) for i in ids]
    assert shown[:3] == ["", "", "대"] and "".join(shown) + decoder.flush() == "대한민국"


def test_spec_validates_levels_and_settings():
    with pytest.raises(TokenizerError, match="--level"):
        TokenizerSpec(level="word")
    with pytest.raises(TokenizerError, match="normalization"):
        TokenizerSpec(normalize="nfx")
    with pytest.raises(TokenizerError, match="too small"):
        TokenizerSpec(level="subword", vocab_size=100)


# ----- continuing a prompt: whole characters and syllables ---------------------------------------------------

from charlm.tokenizers.text import EXTRA_TOKENS, continuation_text  # noqa: E402

KOREAN = "어제 나는 공원에서 사과를 샀다.\n"


def _continue(tok, prompt: str, continuation: str, length: int) -> tuple[str, int]:
    """The text continuation_text writes for the ids of ``continuation`` after ``prompt``, and the ids it used."""
    ids = iter(tok.encode(continuation).tolist())
    used = [0]

    def counted():
        for i in ids:
            used[0] += 1
            yield i

    text = "".join(continuation_text(tok.incremental_decoder(), counted(), length, after=prompt))
    return text, used[0]


def test_a_generated_jamo_joins_the_prompts_last_syllable():
    tok = char_tokenizer(KOREAN, normalize="nfd")
    # 공원에 continuing 고: the first jamo is 공's final ᆼ, which must land inside 고, not after it
    assert _continue(tok, "어제 나는 고", "ᆼ원에서", 4) == ("어제 나는 공원", 4)  # ᆼ ᄋ ᅯ ᆫ: 원 is readable
    text, used = _continue(tok, "어제 나는 고", "ᆼ원에서", 5)  # the 5th is ᄋ alone: one more finishes 에
    assert (text, used) == ("어제 나는 공원에", 6)
    assert text == unicodedata.normalize("NFC", text)


def test_a_hidden_or_empty_prompt_and_zero_length():
    tok = char_tokenizer(KOREAN, normalize="nfd")
    assert _continue(tok, "", "공원", 1) == ("고", 2)  # ᄀ alone is unreadable: ᅩ comes with it
    assert _continue(tok, "고", "ᆼ", 0) == ("고", 0)
    assert _continue(tok, "나는 ᄀ", "ᅡ", 0) == ("나는 ᄀ", 0)  # a length of 0 draws nothing, even then
    assert _continue(tok, "나는 ᄀ", "ᅡ", 1) == ("나는 가", 1)


def test_only_a_syllable_a_jamo_can_join_is_held_back():
    tok = char_tokenizer(KOREAN, normalize="nfd")
    for prompt, held in (("나는 고", "고"), ("나는 ᄀ", "ᄀ"), ("나는 공", ""), ("hello", ""), ("나는\n", "")):
        decoder = tok.incremental_decoder()
        shown = decoder.prime(prompt)
        assert shown + decoder.flush() == prompt and prompt.endswith(held) and shown == prompt[:len(prompt) - len(held)]


def test_byte_level_finishes_a_cut_utf8_character_and_char_level_stops_at_the_length():
    assert _continue(ByteTokenizer(), "", "한국", 1) == ("한", 3)  # three bytes to a syllable
    assert _continue(char_tokenizer(KOREAN), "나는 ", "공원에서", 2) == ("나는 공원", 2)


def test_an_unfinishable_syllable_stops_within_the_extra_tokens():
    tok = char_tokenizer(KOREAN, normalize="nfd")
    leading_only = "ᄀ" * 50  # a broken model writing only leading consonants
    text, used = _continue(tok, "", leading_only, 1)
    assert used == 1 + EXTRA_TOKENS and text == unicodedata.normalize("NFC", leading_only[:used])


from charlm.tokenizers.text import skipped_chars  # noqa: E402


def test_skipped_chars_counts_only_characters_with_nothing_left_to_predict():
    plain = char_tokenizer("cafe")
    assert skipped_chars(plain, "café ☃") == 3  # é, the space and ☃: unknown, and without normalisation nothing is left
    nfd = char_tokenizer("cafe ", normalize="nfd")
    assert skipped_chars(nfd, "café ☃☃") == 2  # é keeps its 'e'; each ☃ is dropped
    assert skipped_chars(nfd, "cafe") == 0
    nfc = char_tokenizer("cafe", normalize="nfc")
    assert skipped_chars(nfc, "cafe\u0301") == 1  # e + accent compose into one unknown é, dropped as one
