"""Small pieces the Stepper uses to turn one step's tensors into records."""

from __future__ import annotations

from lmscope.engine.attention import AttentionRecorder
from lmscope.engine.records import AttentionRows

REPLACEMENT = "\ufffd"
WORD_START = "\u2581"  # SentencePiece's word-boundary mark


class Decoder:
    """Token id -> display text, cached: ``decode([id])`` keeps spaces and special tokens.

    Byte-fallback pieces (half of a UTF-8 character, as Chinese prompts produce) decode to
    U+FFFD alone; for those the vocabulary piece (``<0xE4>``) is shown instead. SentencePiece
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
                text = piece
            elif piece.startswith(WORD_START) and not text.startswith(" "):
                text = " " + text
            self._texts[token_id] = text
        return text


def attention_rows(recorder: AttentionRecorder, kind: str, query_len: int,
                   last_row_only: bool = False) -> AttentionRows | None:
    """The captured rows of one kind as a record (stored off the heap by the recorder).

    Args:
        recorder: the forward pass's recorder.
        kind: ``self``, ``cross`` or ``encoder``.
        query_len: number of query positions so far; the kept rows are the last ones.
        last_row_only: keep just the last query's row (decoder-only step 0 reuses the prefill).
    """
    probs = recorder.finish(kind)
    if probs is None:
        return None
    if last_row_only:
        probs = probs[:, :, -1:]
    return AttentionRows(kind=kind, probs=probs, query_start=query_len - probs.shape[2])


def finish_reason(state, token_id: int, settings) -> str:
    """Why generation ended, in the words of transformers' stopping criteria."""
    eos = state.config._eos_token_tensor
    if eos is not None and token_id in eos.flatten().tolist():
        return "eos"
    if state.generated >= settings.max_new_tokens:
        return "max_new_tokens"
    if settings.stop_strings:
        return "stop_string"
    return "max_length"
