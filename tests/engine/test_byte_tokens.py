"""Tokens holding part of a UTF-8 character show as bytes, never byte-level BPE mojibake (issue 12)."""

from __future__ import annotations

import re

import pytest

from lmscope.engine import defaults
from lmscope.engine.step_parts import REPLACEMENT, Decoder, byte_notation


@pytest.mark.parametrize("piece, shown", [
    ("ðŁ", "<0xF0><0x9F>"),       # the first half of an emoji
    ("ĠåĴ", " <0xE5><0x92>"),     # a space, then part of a CJK character
    ("âĢ", "<0xE2><0x80>"),
    ("Ġhello", " hello"),
    ("<0xE4>", "<0xE4>"),          # SentencePiece byte fallback: already byte notation
])
def test_byte_notation(piece, shown):
    assert byte_notation(piece) == shown


class _ByteLevelTokenizer:
    def decode(self, ids, skip_special_tokens=False):
        return REPLACEMENT

    def convert_ids_to_tokens(self, token_id):
        return "ðŁ"


def test_decoder_shows_partial_characters_as_bytes():
    assert Decoder(_ByteLevelTokenizer()).token(5) == "<0xF0><0x9F>"


def test_byt5_bytes_of_a_character_show_as_bytes():
    """ByT5's tokens are bytes: one of a character's decodes to nothing alone (it was shown as an
    empty token); whole ASCII characters and the special tokens read as themselves."""
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    ids = tokenizer("fox ä").input_ids
    decoder = Decoder(tokenizer)
    assert [decoder.token(i) for i in ids] == ["f", "o", "x", " ", "<0xC3>", "<0xA4>", "</s>"]
    assert decoder.token(tokenizer.pad_token_id) == "<pad>"


@pytest.mark.integration
def test_smollm2_partial_tokens_are_never_mojibake():
    from transformers import AutoTokenizer

    folder = defaults.default_llama_dir()
    if not defaults.is_complete(folder):
        pytest.skip("the default Llama is not prepared: run `lmscope fetch`")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    decoder = Decoder(tokenizer)
    # pieces that hold part of a character (not U+FFFD itself, which is a whole one: 'ï¿½')
    partial = [i for i in range(len(tokenizer))
               if REPLACEMENT in tokenizer.decode([i]) and "ï¿½" not in tokenizer.convert_ids_to_tokens(i)]
    assert len(partial) > 50
    for token_id in partial:
        text = decoder.token(token_id)
        assert REPLACEMENT not in text and not re.search("[\u0100-\u017f\u00c0-\u00ff]", text), (token_id, text)
        assert "<0x" in text
