"""Small pieces the Stepper uses to turn one step's tensors into records."""

from __future__ import annotations

from dataclasses import dataclass

from lmscope.engine.attention import AttentionRecorder
from lmscope.engine.deferred_rows import LateRows
from lmscope.engine.records import AttentionRows

REPLACEMENT = "\ufffd"
WORD_START = "\u2581"  # SentencePiece's word-boundary mark


class Decoder:
    """Token id -> display text, cached: ``decode([id])`` keeps spaces and special tokens.

    Byte-fallback pieces (half of a UTF-8 character, as Chinese prompts produce) decode to
    U+FFFD alone; for those the vocabulary piece (``<0xE4>``) is shown instead, and a byte-level
    BPE piece (``ðŁ``: GPT-2's printable stand-ins for bytes) as the bytes it is (``<0xF0><0x9F>``); a
    byte tokenizer's (ByT5's) byte of a character, which decodes to nothing alone, as ``<0xC3>``. SentencePiece
    pieces that start a word (``▁der``) lose their space when decoded alone; it is put back so
    tokens read as the text they make.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._texts: dict[int, str] = {}

    def token(self, token_id: int) -> str:
        text = self._texts.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], skip_special_tokens=False)
            piece = str(self.tokenizer.convert_ids_to_tokens(token_id))
            if REPLACEMENT in text:
                text = byte_notation(piece)
            elif not text and len(piece) == 1 and 0x80 <= ord(piece) <= 0xFF:
                # A byte tokenizer's (ByT5's) piece is the byte as a character; a byte that is
                # part of a character decodes to nothing alone.
                text = f"<0x{ord(piece):02X}>"
            elif piece.startswith(WORD_START) and not text.startswith(" "):
                text = " " + text
            self._texts[token_id] = text
        return text


def byte_notation(piece: str) -> str:
    """A byte-level BPE piece as text: whole UTF-8 characters as themselves, stray bytes as
    ``<0xNN>``; ``"ĠåĴ"`` -> ``" <0xE5><0x92>"``. A piece that is not byte-level (SentencePiece's
    ``<0xE4>``) comes back as it is."""
    table = _unicode_to_bytes()
    if not piece or any(char not in table for char in piece):
        return piece
    text = bytes(table[char] for char in piece).decode("utf-8", errors="surrogateescape")
    return "".join(f"<0x{ord(c) - 0xDC00:02X}>" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)


def _unicode_to_bytes() -> dict[str, int]:
    global _BYTE_TABLE
    if _BYTE_TABLE is None:
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        _BYTE_TABLE = {char: byte for byte, char in bytes_to_unicode().items()}
    return _BYTE_TABLE


_BYTE_TABLE: dict[str, int] | None = None


def attention_rows(recorder: AttentionRecorder, kind: str, query_len: int,
                   last_row_only: bool = False, late: bool = False) -> AttentionRows | LateAttention | None:
    """The captured rows of one kind as a record (stored off the heap by the recorder).

    Args:
        recorder: the forward pass's recorder.
        kind: ``self``, ``cross`` or ``encoder``.
        query_len: number of query positions so far; the kept rows are the last ones.
        last_row_only: keep just the last query's row (decoder-only step 0 reuses the prefill).
        late: a step whose record waits (``record_later``): deferred rows come back as a
            :class:`LateAttention`, made a record by :func:`with_rows` at the hand-over.
    """
    probs = recorder.finish(kind, late)
    if probs is None:
        return None
    if isinstance(probs, LateRows):
        return LateAttention(kind, probs, query_start=query_len - 1)  # a deferred step keeps one row
    if last_row_only:
        probs = probs[:, :, -1:]
    return AttentionRows(kind=kind, probs=probs, query_start=query_len - probs.shape[2])


@dataclass(frozen=True)
class LateAttention:
    """A waiting record's attention rows of one kind until the hand-over gives them a slot."""

    kind: str
    rows: LateRows
    query_start: int

    def record(self) -> AttentionRows:
        return AttentionRows(kind=self.kind, probs=self.rows.probs, query_start=self.query_start)


def with_rows(fields: dict) -> dict:
    """A waiting record's fields with its :class:`LateAttention` rows made records (after the
    hand-over's ``DeferredRows.complete``)."""
    late = [name for name in ("attention", "cross_attention") if isinstance(fields.get(name), LateAttention)]
    if not late:
        return fields
    return {**fields, **{name: fields[name].record() for name in late}}


def finish_reason(state, token_id: int, settings) -> str:
    """Why generation ended, in the words of transformers' stopping criteria."""
    if token_id in state.eos_ids:
        return "eos"
    if state.generated >= settings.max_new_tokens:
        return "max_new_tokens"
    if settings.stop_strings:
        return "stop_string"
    return "max_length"
