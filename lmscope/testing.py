"""Record builders and a FakeEngine, shared by the TUI tests, the benchmarks and the screenshot script.

Everything here is numpy and plain Python: no torch, so a test or a screenshot never loads a
model. Records are deterministic from a seed and shaped like the real engine's: a llama-like
session samples through several processors (some candidates removed), a t5-like session
decodes greedily with cross-attention over the encoder tokens.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from lmscope.engine.errors import UserError
from lmscope.engine.records import (
    AttentionRows, CacheStats, Candidate, LayerCache, LayerLens, PromptRecord, SessionInfo, Stage, StepRecord,
    TensorInfo,
)

LLAMA_PROMPT = ("<s>", "[INST]", " What", " is", " the", " capital", " of", " France", "?",
                " Answer", " in", " one", " sentence", ".", " [/INST]")
LLAMA_OUTPUT = (" The", " capital", " of", " France", " is", " Paris", ".", "\n", "\n", "It", " is",
                " known", " for", " the", " E", "iff", "el", " Tower", ",", " the", " Lou", "vre",
                " and", " its", " caf", "és", ".", " ")
T5_PROMPT = ("translate", "English", "to", "German", ":", "The", "house", "is", "wonderful", ".", "</s>")
T5_OUTPUT = ("Das", "Haus", "ist", "wunderbar", ".")
FILLER = (" and", " the", " a", " city", " river", " old", " [", "]", "\t", " 北", "京", "\u00a0", "<0xE5>",
          " Rome", " Berlin", " Madrid", " London", " Lyon", " is", " was", ",", "!")
SPECIAL = ("<unk>", "<s>", "</s>", "<pad>")
WORDS = tuple(" " + w for w in (
    "Paris city capital France country largest home famous museum tower river Seine art history "
    "people about over million many also located north world center culture food wine fashion "
    "beautiful ancient modern known called region Europe French it has had are were its "
    "Haus Gebäude Wohnung ist sind war schön herrlich toll der die ein eine sehr wirklich Heim"
).split())
SIM_VOCAB = 96
"""Entries of the simulated distribution; ``kept`` reports the nominal vocabulary size instead."""


def _vocab(family: str) -> tuple[str, ...]:
    """Every token text the builders use, in id order (ids are positions plus an offset)."""
    words = LLAMA_PROMPT + LLAMA_OUTPUT if family == "llama" else T5_PROMPT + T5_OUTPUT
    unique = dict.fromkeys(SPECIAL + words + FILLER)
    unique.update(dict.fromkeys(WORDS))
    return tuple(unique)[:SIM_VOCAB] + tuple(f" w{i}" for i in range(SIM_VOCAB - len(unique)))


def token_id(family: str, text: str) -> int:
    """The fake id of a token text (specials first, like a real vocabulary)."""
    return _vocab(family).index(text) + (0 if text in SPECIAL else 100)


def _ids(family: str, tokens) -> tuple[int, ...]:
    return tuple(token_id(family, t) for t in tokens)


def fake_attention(rng, layers: int, heads: int, queries: np.ndarray, keys: int, causal=True) -> np.ndarray:
    """Plausible attention probabilities ``[layer, head, query_pos, key_pos]``, rows summing to 1.

    A sink on key 0, a recency decay that differs per head, and noise, so heads look different.
    """
    k = np.arange(keys, dtype=np.float32)
    q = queries.astype(np.float32)[:, None]
    tau = rng.uniform(0.5, 12.0, size=(layers, heads, 1, 1)).astype(np.float32)
    distance = np.abs(q - k)
    weights = np.exp(-distance / tau) + rng.uniform(0, 0.25, size=(layers, heads, 1, keys)).astype(np.float32)
    weights[..., 0] += rng.uniform(0.5, 6.0, size=(layers, heads, 1)).astype(np.float32)
    if causal:
        weights = np.where(k <= q, weights, 0.0)
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


def _cache(family: str, shape: dict, self_keys: int, enc_keys: int = 0) -> CacheStats:
    """Cache sizes after a forward pass: one self entry per layer, plus fixed cross entries for T5."""
    def entry(layer, kind, keys):
        kv = (1, shape["kv_heads"], keys, shape["head_dim"])
        return LayerCache(layer, kind, kv, kv, shape["dtype"], 2 * int(np.prod(kv)) * shape["itemsize"])
    layers = [entry(i, "self", self_keys) for i in range(shape["layers"])]
    if family == "t5":
        layers += [entry(i, "cross", enc_keys) for i in range(shape["layers"])]
    cls = "EncoderDecoderCache" if family == "t5" else "DynamicCache"
    return CacheStats(tuple(layers), shape["heads"], shape["kv_heads"], cls)


FAMILY_SHAPES = {
    "llama": dict(model="HuggingFaceTB/SmolLM2-135M-Instruct", model_type="llama", layers=4, heads=9,
                  kv_heads=3, head_dim=64, dtype="float32", itemsize=4, vocab=49152),
    "t5": dict(model="lmscope/demo-t5", model_type="t5", layers=3, heads=8, kv_heads=8, head_dim=64,
               dtype="float32", itemsize=4, vocab=32128),
}
LLAMA_PIPELINE = ("logits", "RepetitionPenaltyLogitsProcessor", "TemperatureLogitsWarper",
                  "TopKLogitsWarper", "TopPLogitsWarper")
T5_PIPELINE = ("logits", "RepetitionPenaltyLogitsProcessor")


def _shape(family: str, **overrides) -> dict:
    return {**FAMILY_SHAPES[family], **{k: v for k, v in overrides.items() if v is not None}}


def make_info(family: str = "llama", *, max_new_tokens: int = 32, **overrides) -> SessionInfo:
    """The SessionInfo of a fake model of ``family`` (layers/heads/kv_heads may be overridden)."""
    s = _shape(family, **overrides)
    settings = ((("do_sample", "True"), ("temperature", "0.7"), ("top_k", "50"), ("top_p", "0.9"),
                 ("repetition_penalty", "1.1")) if family == "llama" else (("repetition_penalty", "1.2"),))
    return SessionInfo(s["model"], family, s["model_type"], "cpu", s["dtype"], s["layers"], s["heads"],
                       s["kv_heads"], max_new_tokens, settings)


def _softmax(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    exp = np.where(finite, np.exp(scores - scores[finite].max()), 0.0)
    return exp / exp.sum()


def _process(name: str, scores: np.ndarray, seen: list[int]) -> np.ndarray:
    """One processor of the simulated pipeline, with transformers' default-ish parameters."""
    out = scores.copy()
    if name == "RepetitionPenaltyLogitsProcessor" and seen:
        out[seen] = np.where(out[seen] > 0, out[seen] / 1.2, out[seen] * 1.2)
    elif name == "TemperatureLogitsWarper":
        out = out / 0.7
    elif name == "TopKLogitsWarper":
        out[np.argsort(-out)[50:]] = -np.inf
    elif name == "TopPLogitsWarper":
        order = np.argsort(-out)
        probs = _softmax(out)[order]
        out[order[(np.cumsum(probs) - probs) >= 0.9]] = -np.inf
    return out


def _stage(family: str, name: str, scores: np.ndarray, previous: Stage | None, vocab_size: int) -> Stage:
    """Record one stage: top 8, what it removed or reranked among the previous top, kept, entropy."""
    vocab, probs = _vocab(family), _softmax(scores)
    order = [int(i) for i in np.argsort(-scores, kind="stable")[:8] if np.isfinite(scores[i])]
    top = tuple(Candidate(token_id(family, vocab[i]), vocab[i], float(scores[i]), float(probs[i])) for i in order)
    finite = int(np.isfinite(scores).sum())
    before = [c.token_id for c in previous.top] if previous else []
    now = [c.token_id for c in top]
    removed = tuple(t for t in before if not np.isfinite(scores[_vocab_index(family, t)]))
    reranked = tuple(t for r, t in enumerate(before) if t in now and now.index(t) != r)
    nz = probs[probs > 0]
    return Stage(name, top, removed, reranked, vocab_size if finite == len(scores) else finite,
                 float(-(nz * np.log(nz)).sum()))


def _vocab_index(family: str, tid: int) -> int:
    return tid if tid < len(SPECIAL) else tid - 100


def make_stages(family: str, target: str, *, seed: int = 0, seen: tuple[int, ...] = (),
                pipeline: tuple[str, ...] | None = None) -> tuple[Stage, ...]:
    """Stages of one step whose distribution makes ``target`` likely (top 1 or 2 after processing)."""
    rng = np.random.default_rng(seed)
    pipeline = pipeline or (LLAMA_PIPELINE if family == "llama" else T5_PIPELINE)
    scores = rng.normal(0.0, 1.6, SIM_VOCAB)
    chosen = _vocab(family).index(target)
    scores[chosen] = np.delete(scores, chosen).max() + rng.uniform(-0.2 if family == "llama" else 0.4, 3.0)
    seen_idx = [_vocab_index(family, t) for t in seen]
    stages: list[Stage] = []
    for name in pipeline:
        scores = scores if name == "logits" else _process(name, scores, seen_idx)
        stages.append(_stage(family, name, scores, stages[-1] if stages else None, FAMILY_SHAPES[family]["vocab"]))
    return tuple(stages)


def _prompt_tokens(family: str, n_tokens: int | None) -> tuple[str, ...]:
    base = LLAMA_PROMPT if family == "llama" else T5_PROMPT
    if n_tokens is None or n_tokens <= len(base):
        return base
    extra = tuple(FILLER[i % len(FILLER)] for i in range(n_tokens - len(base)))
    return base[:-1] + extra + base[-1:]


def make_prompt(family: str = "llama", *, n_tokens: int | None = None, seed: int = 0,
                keep_rows: int | None = None, **shape) -> PromptRecord:
    """The PromptRecord of a fake prefill (llama) or encoder pass (t5).

    Args:
        family: ``"llama"`` or ``"t5"``.
        n_tokens: prompt length; the default prompt is padded with filler tokens to reach it.
        seed: random seed of the attention.
        keep_rows: keep only the prompt's last rows of attention, like the engine at long context.
        **shape: ``layers``, ``heads``, ``kv_heads`` overrides.
    """
    s, rng = _shape(family, **shape), np.random.default_rng(seed)
    tokens = _prompt_tokens(family, n_tokens)
    n, ids = len(tokens), _ids(family, tokens)
    start = 0 if keep_rows is None else max(0, n - keep_rows)
    probs = fake_attention(rng, s["layers"], s["heads"], np.arange(start, n), n, causal=family == "llama")
    kind = "self" if family == "llama" else "encoder"
    tensors = (TensorInfo("input_ids", (1, n), "int64", ids[:6]),
               TensorInfo("attention_mask", (1, n), "int64", (1,) * 6),
               TensorInfo("cache_position", (n,), "int64", tuple(range(6))),
               TensorInfo("logits", (1, 1, s["vocab"]), "float32"))
    t5 = family == "t5"
    return PromptRecord(family, "".join(tokens), ids, tokens, 0 if t5 else None, "<pad>" if t5 else None, tensors,
                        AttentionRows(kind, probs, start), None if t5 else _cache(family, s, n), 0.0412)


def _step_tensors(family: str, s: dict, prev_id: int, keys: int, enc: int) -> tuple[TensorInfo, ...]:
    first = TensorInfo("decoder_input_ids" if family == "t5" else "input_ids", (1, 1), "int64", (prev_id,))
    rest = ((TensorInfo("encoder_outputs.last_hidden_state", (1, enc, 512), "float32"),) if family == "t5"
            else (TensorInfo("attention_mask", (1, keys), "int64", (1,) * min(keys, 6)),))
    return (first, *rest, TensorInfo("cache_position", (1,), "int64", (keys - 1,)),
            TensorInfo("logits", (1, 1, s["vocab"]), "float32"))


def make_step(step: int, token: str, *, family: str = "llama", prompt: PromptRecord | None = None,
              previous: tuple[StepRecord, ...] = (), seed: int = 0, finish_reason: str | None = None,
              **shape) -> StepRecord:
    """One fake StepRecord choosing ``token``, consistent with ``prompt`` and the ``previous`` steps.

    Args:
        step: 0-based index of the generated token.
        token: the token text to choose (must be in the builders' vocabulary).
        family: ``"llama"`` or ``"t5"``.
        prompt: the session's prompt (built with the same family and shape when None).
        previous: the steps before this one (their tokens feed the repetition penalty).
        seed: base seed; the step index is mixed in.
        finish_reason: ``"eos"`` or ``"max_new_tokens"`` to mark the last step.
        **shape: ``layers``, ``heads``, ``kv_heads`` overrides.
    """
    s, rng = _shape(family, **shape), np.random.default_rng((seed, step))
    prompt = prompt or make_prompt(family, seed=seed, **shape)
    seen = tuple(prompt.input_ids) + tuple(r.token_id for r in previous)
    t5, enc = family == "t5", len(prompt.input_ids)
    keys = step + 1 if t5 else enc + step
    prev_id = (previous[-1].token_id if previous else (0 if t5 else prompt.input_ids[-1]))
    # query_start: the new query's absolute position, as the engine records it
    attention = AttentionRows("self", fake_attention(rng, s["layers"], s["heads"], np.array([keys - 1]), keys),
                              keys - 1)
    cross = (AttentionRows("cross", fake_attention(rng, s["layers"], s["heads"], np.array([enc // 2]), enc, False),
                           step) if t5 else None)
    return StepRecord(step, token_id(family, token), token, "argmax" if t5 else "sample",
                      make_stages(family, token, seed=seed * 7919 + step, seen=seen),
                      _step_tensors(family, s, prev_id, keys, enc), _cache(family, s, keys, enc), attention, cross,
                      finish_reason is not None, finish_reason, round(0.02 + 0.015 * float(rng.random()), 4))


@dataclass(frozen=True, eq=False)
class Recording:
    """A whole fake session: what a FakeEngine replays."""

    info: SessionInfo
    prompt: PromptRecord
    steps: tuple[StepRecord, ...]


def make_session(family: str = "llama", *, steps: int = 12, seed: int = 0, finish: str = "eos",
                 n_prompt: int | None = None, keep_rows: int | None = None, **shape) -> Recording:
    """A deterministic session of ``steps`` generated tokens, ending by ``"eos"`` or ``"max_new_tokens"``."""
    prompt = make_prompt(family, n_tokens=n_prompt, seed=seed, keep_rows=keep_rows, **shape)
    script = LLAMA_OUTPUT if family == "llama" else T5_OUTPUT
    records: list[StepRecord] = []
    for i in range(steps):
        last = i == steps - 1
        token = "</s>" if last and finish == "eos" else script[i % len(script)]
        records.append(make_step(i, token, family=family, prompt=prompt, previous=tuple(records), seed=seed,
                                 finish_reason=finish if last else None, **shape))
    max_new = steps if finish == "max_new_tokens" else max(steps, 32)
    return Recording(make_info(family, max_new_tokens=max_new, **shape), prompt, tuple(records))


class FakeEngine:
    """Replays a Recording through the Engine protocol, counting calls like a test double should.

    Args:
        recording: what ``start`` and ``step`` return.
        gate: when given, ``step`` waits for it to be set (tests hold a step "running").
        gate_from: the gate applies only from this step index on (a benchmark preloads history).
        delay_s: seconds each ``step`` sleeps, like a forward pass (benchmarks, demos).
        fail_at: ``step`` raises ``error`` (once) when asked for this step index.
        error: the exception to raise; a RuntimeError by default.
        writes_behind: ``complete_waiting(write_behind=True)`` leaves the rows "being written"
            (``writing``), as the Stepper's writer thread does, until ``rows_written`` has been
            asked ``written_after`` more times (or told to wait).
    """

    def __init__(self, recording: Recording, *, gate: threading.Event | None = None, gate_from: int = 0,
                 delay_s: float = 0.0, fail_at: int | None = None, error: Exception | None = None,
                 writes_behind: bool = False, written_after: int = 3) -> None:
        self.info = recording.info
        self.recording = recording
        self.gate, self.gate_from, self.delay_s, self.fail_at = gate, gate_from, delay_s, fail_at
        self.error = error or RuntimeError(f"CUDA out of memory (fake) at step {fail_at}")
        self.start_calls = self.step_calls = self.rewind_calls = self.active = self.max_active = 0
        self.complete_calls = 0
        self.prepared_after: list[int] = []
        """For each ``prepare_next`` call, the steps made before it."""
        self.hits_noted: list[tuple[int, dict]] = []
        """``(step, note)`` of each ``note_hit`` call."""
        self.resumes_noted: list[tuple[int, tuple[StepRecord, ...]]] = []
        """``(step, records)`` of each ``note_resumed`` call."""
        self.waiting_rows: set[int] = set()
        """Indices of steps returned with ``rows_later`` and not completed since."""
        self.writes_behind, self.written_after, self._checks_left = writes_behind, written_after, 0
        self.writing: set[int] = set()
        """Indices of steps completed with ``write_behind`` whose rows count as not yet written."""
        self.entered = threading.Event()
        """Set when a ``step`` call has begun, so a test knows the worker is inside it."""
        self._next, self._failed, self._lock = 0, False, threading.Lock()
        self._made_later: list[StepRecord] = []

    @property
    def finished(self) -> bool:
        """True after the recording's last step (or one marked finished) was returned."""
        steps = self.recording.steps
        return self._next >= len(steps) or (self._next > 0 and steps[self._next - 1].finished)

    def start(self) -> PromptRecord:
        """Rewind to the first step and return the prompt record."""
        with self._track():
            self.start_calls += 1
            self._next, self._failed, self._made_later = 0, False, []
            self.writing.clear()
            return self.recording.prompt

    def step(self, force: int | None = None, rows_later: bool = False, record_later: bool = False,
             layers_later: bool | None = None, scores_in_step: bool = False) -> StepRecord | None:
        """Return the next recorded step, after the gate and the delay (``layers_later`` and
        ``scores_in_step`` change nothing: recorded steps have their rows and no layers).

        With ``force`` the recorded step comes back choosing that id (``chosen_by="forced"``);
        the steps after it are the recording's, so a fake session stays deterministic. With
        ``rows_later`` its index joins ``waiting_rows`` until :meth:`complete_waiting`; with
        ``record_later`` too, and it returns None: :meth:`complete_waiting` returns the record.
        """
        with self._track():
            self.step_calls += 1
            rows_later = rows_later or record_later
            if not rows_later:
                self.waiting_rows.clear()  # as the Stepper completes the waiting steps first
                self.writing.clear()  # and waits for their writes
            self.entered.set()
            if self.finished:
                raise RuntimeError("generation already finished")
            if self.gate is not None and self._next >= self.gate_from:
                self.gate.wait(timeout=10)
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.fail_at == self._next and not self._failed:
                self._failed = True
                raise self.error
            self._next += 1
            record = self.recording.steps[self._next - 1]
            if rows_later:
                self.waiting_rows.add(self._next - 1)
            if force is not None:
                record = replace(record, token_id=force, token=self._text_of(force), chosen_by="forced",
                                 chosen_prob=None, raw_rank=None)
            if record_later:
                self._made_later.append(record)
                return None
            return record

    def complete_waiting(self, write_behind: bool = False) -> tuple[StepRecord, ...]:
        """Every step made with ``rows_later`` has its rows (recorded ones have them already);
        returns the records of the steps made with ``record_later`` since the last call.

        With ``write_behind`` and ``writes_behind`` set, the rows count as still being written
        (``writing`` holds the steps) until a ``rows_written(wait=True)`` or the
        ``written_after`` further ``rows_written()`` checks, as a writer thread would finish."""
        self.complete_calls += 1
        if write_behind and self.writes_behind:
            self.writing |= self.waiting_rows
            self._checks_left = self.written_after
        else:
            self.writing.clear()
        self.waiting_rows.clear()
        made, self._made_later = tuple(self._made_later), []
        return made

    def prepare_next(self) -> None:
        """Noted (``prepared_after``): the fake has no row store to prepare."""
        self.prepared_after.append(self._next)

    def note_hit(self, step: int, note: dict) -> None:
        """Noted (``hits_noted``): the fake records nothing."""
        self.hits_noted.append((step, note))

    def note_resumed(self, step: int, records: tuple[StepRecord, ...]) -> None:
        """Noted (``resumes_noted``): the fake records nothing."""
        self.resumes_noted.append((step, tuple(records)))

    def rows_written(self, wait: bool = False) -> bool:
        """True once the steps written behind are done (``wait``: at once)."""
        if wait or self._checks_left <= 0:
            self.writing.clear()
        else:
            self._checks_left -= 1
        return not self.writing

    def rewind(self, step: int) -> None:
        """The next ``step()`` returns recorded step ``step`` again."""
        self.waiting_rows.clear()
        self.writing.clear()
        with self._track():
            if not 0 <= step <= self._next:
                raise UserError(f"cannot rewind to step {step}: steps 0 to {self._next} can be rewound to")
            self.rewind_calls += 1
            self._next = step

    def first_token(self, text: str) -> tuple[int, str]:
        """The fake vocabulary's token for ``text`` (as typed, or its first word with a space)."""
        words = text.split()
        for candidate in (text, " " + words[0] if words else text, words[0] if words else text):
            if candidate in _vocab(self.info.family):
                return token_id(self.info.family, candidate), candidate
        raise UserError(f"{text!r} is not in the fake vocabulary")

    def _text_of(self, forced_id: int) -> str:
        index = _vocab_index(self.info.family, forced_id)
        vocab = _vocab(self.info.family)
        return vocab[index] if 0 <= index < len(vocab) else f"<{forced_id}>"

    def lens(self, step: int, top: int = 3):
        """A made-up logit lens of ``step``: the chosen token surfaces in the later layers."""
        return make_lens(self.recording.steps[step], self.info.layers, top)

    def layer_tensors(self, step: int, layer: int) -> tuple[TensorInfo, ...]:
        """Made-up shapes and values of what ``layer`` saw at ``step``, shaped like the real engine's."""
        return make_layer_tensors(self.info, step, layer)

    def _track(self):
        """Count concurrent calls: ``max_active`` above 1 means two calls raced on one cache."""
        engine = self

        class _Tracker:
            def __enter__(self):
                with engine._lock:
                    engine.active += 1
                    engine.max_active = max(engine.max_active, engine.active)

            def __exit__(self, *exc):
                with engine._lock:
                    engine.active -= 1
        return _Tracker()


def write_trace(path, session: Recording, rows_dtype: str = "float32", lens_steps=()) -> Recording:
    """Write ``session`` to ``path`` as ``--record`` would (meta, prompt, every step, and the
    :func:`make_lens` of each step in ``lens_steps``, as a recorder asked for it); returns it."""
    from lmscope.engine.trace_writer import write_session

    lenses = {step: make_lens(session.steps[step], session.info.layers) for step in lens_steps}
    write_session(path, session.info, session.prompt, session.steps, rows_dtype, lenses)
    return session


def engine_factory(engine: FakeEngine, *, load_gate: threading.Event | None = None):
    """An EngineFactory returning ``engine``; with ``load_gate`` it blocks like a slow model load."""
    def load() -> FakeEngine:
        if load_gate is not None:
            load_gate.wait(timeout=10)
        return engine
    return load


def fake_factory(family: str = "llama", *, steps: int = 12, seed: int = 0, **engine_kwargs):
    """Shortcut for scripts: an EngineFactory over a fresh ``make_session(family, steps=steps)``."""
    return engine_factory(FakeEngine(make_session(family, steps=steps, seed=seed), **engine_kwargs))


def screen_text(app) -> str:
    """The running app's screen as plain text (what a person would read), for tests and debugging."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)


def unprintable_on_screen(app) -> list[str]:
    """Every text on the running app's screen (panes, dialogs, notifications) holding a character
    that is not printable: what the terminal would be handed raw. Textual's own control
    segments (its cursor moves) are not text and are left out."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    return [segment.text for line in update.strips for strip in line for segment in strip
            if not segment.control and not segment.text.isprintable()]


async def wait_until_idle(pilot, timeout_s: float = 120.0) -> None:
    """Wait until the app's engine call has finished and its message has been handled.

    ``workers.wait_for_complete()`` alone can return before a just-requested step's worker has
    started; ``busy`` is set by the key's action and cleared by the message that ends the call.
    """
    import time

    app, deadline = pilot.app, time.monotonic() + timeout_s
    await app.workers.wait_for_complete()
    await pilot.pause()
    while app.busy:
        if time.monotonic() > deadline:
            raise TimeoutError("the app stayed busy")
        await pilot.pause(0.01)  # only while a real engine call is still running
        await app.workers.wait_for_complete()


def make_lens(record: StepRecord, layers: int, top: int = 3):
    """A deterministic logit lens for a fake step: p(chosen) rises from ~0 to the logits stage's value.

    Early layers predict filler tokens; the last layer's lens is the step's logits stage, as on the
    real engine.
    """
    final = record.stages[0]
    rng = np.random.default_rng(record.step)
    chosen = next((c for c in final.top if c.token_id == record.token_id), final.top[0])
    entries = []
    for layer in range(layers):
        share = (layer + 1) / layers
        p_chosen = chosen.prob * share**3
        if layer == layers - 1:
            cands = final.top[:top]
        else:
            others = [Candidate(1000 + int(i), FILLER[int(i) % len(FILLER)], 0.0, 0.0)
                      for i in rng.choice(len(FILLER), top, replace=False)]
            probs = sorted(rng.uniform(0.02, 0.3, top), reverse=True)
            cands = sorted([Candidate(c.token_id, c.token, 0.0, float(p)) for c, p in zip(others, probs)]
                           + [Candidate(chosen.token_id, chosen.token, 0.0, p_chosen)], key=lambda c: -c.prob)[:top]
        rank = sum(1 for c in cands if c.prob > p_chosen) if any(c.token_id == chosen.token_id for c in cands) \
            else top + int((1 - share) * 500)
        entries.append(LayerLens(layer, tuple(cands), p_chosen, rank, 6.0 * (1 - share) + final.entropy * share,
                                 10.0 + 4.0 * layer))
    return tuple(entries)


def make_layer_tensors(info: SessionInfo, step: int, layer: int) -> tuple[TensorInfo, ...]:
    """Deterministic per-layer tensors: hidden ``[1, 1, d]``, q/k/v after RoPE, outputs (T5: position bias)."""
    rng = np.random.default_rng(1000 * step + layer)
    d, head_dim = 576 if info.family == "llama" else 512, 64
    keys = step + 16
    shapes = [("hidden_states", (1, 1, d)), ("q", (1, info.query_heads, 1, head_dim)),
              ("k", (1, info.kv_heads, keys, head_dim)), ("v", (1, info.kv_heads, keys, head_dim))]
    if info.family == "t5":
        shapes.append(("position_bias", (1, info.query_heads, 1, keys)))
    shapes.append(("self_attn_output", (1, 1, d)))
    if info.family == "t5":  # cross-attention over the encoder's tokens (fixed length)
        shapes += [("cross_q", (1, info.query_heads, 1, head_dim)), ("cross_k", (1, info.kv_heads, 11, head_dim)),
                   ("cross_v", (1, info.kv_heads, 11, head_dim)), ("cross_attn_output", (1, 1, d))]
    shapes += [("mlp_output", (1, 1, d)), ("layer_output", (1, 1, d))]
    return tuple(TensorInfo(name, shape, info.dtype, tuple(round(float(v), 4) for v in rng.normal(0, 1, 4)))
                 for name, shape in shapes)
