"""The Stepper: transformers' sampling loop, one token per call, recording everything shown.

Each ``step()`` is one iteration of ``GenerationMixin._sample`` for a batch of one: forward
pass (the prefill first), logits of the last position, transformers' processors one at a time,
argmax or multinomial, then transformers' stopping criteria. The Stepper owns the cache that
``generate``'s own setup created (see ``generation.prepare``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from lmscope.engine import models
from lmscope.engine.attention import AttentionRecorder, label_modules, recording
from lmscope.engine.cache_stats import cache_stats, generation_cache, layer_windows, only_appends
from lmscope.engine.deferred_rows import DeferredRows
from lmscope.engine.distributed import tensor_parallel_ranks
from lmscope.engine.errors import UserError, is_index
from lmscope.engine.generation import prepare
from lmscope.engine.host_copy import HostCopy, Part
from lmscope.engine.layers import REPLAY, LayerCapture, LayerCaptureResult
from lmscope.engine.lens import LayerLens, logit_lens
from lmscope.engine.placement import input_device
from lmscope.engine.processors import (
    StageTensors, chosen_numbers, draw_set_aside, pack_stages, run_stages, sample, stage_names, stage_scores,
    stages_from,
)
from lmscope.engine.records import LazyTuple, PromptRecord, SessionInfo, StepRecord, TensorInfo
from lmscope.engine.row_store import RowStore, writing_behind_pays
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.rewind import RngHistory, rewind_state, state_before
from lmscope.engine.step_parts import Decoder, attention_rows, finish_reason
from lmscope.engine.tensors import ForwardInputs, Seen, describe, describe_later
from lmscope.engine.waiting_records import WaitingRecords


_INFERENCE = torch.inference_mode()
"""Every public method that runs torch runs under it. ``no_grad``, which ``generate()`` runs
under, builds no graph either, but each tensor still gets autograd's version counter and view
tracking; inference mode skips them. On the demo T5, whose operations are tiny, the continue
loop stepped 5% faster (``generate()`` itself gains 6-13% under it: ``bench_fast_steps.py
--breakdown``). Nothing the engine makes is changed in place outside these methods (which
inference tensors refuse): records hold numpy arrays, and the cache and captures are only
used by the methods below."""


MAX_WAITING_BYTES = 64 * 1024 * 1024
"""What the steps waiting for ``complete_waiting`` may hold on the device: their attention rows
(computing them all at once holds them together: at 2k context SmolLM2's rows are 2.2 MiB a
step, so ~30 steps wait) and their records' stages."""


class Stepper:
    """A generation session over one loaded model and prompt. Not thread-safe: one caller.

    Args:
        loaded: the model, tokenizer and family.
        prompt: the user's text.
        settings: generation settings (GenerationConfig names).
        top: candidates kept per stage.
        chat: wrap the prompt in the tokenizer's chat template.
        capture_attention: record attention rows (self, cross, encoder).
        prefill_rows: at most this many of the prompt's last query rows are kept at prefill.
        layer_capture: ``off``, ``residual`` (the logit lens) or ``full`` (and stepping into
            layers); see ``engine.layers.CAPTURE_MODES``.
    """

    writes_behind: ClassVar[bool | None] = None
    """Whether a hand-over's rows may be written behind (``complete_waiting(write_behind=True)``):
    None lets the machine decide (``row_store.writing_behind_pays``); tests set True or False."""

    def __init__(self, loaded: models.LoadedModel, prompt: str, settings: GenerationSettings, *,
                 top: int = 10, chat: bool = False, capture_attention: bool = True, prefill_rows: int = 64,
                 layer_capture: str = "full"):
        self.model, self.tokenizer, self.family = loaded.model, loaded.tokenizer, loaded.family
        self.prompt, self.settings, self.top, self.chat = prompt, settings, top, chat
        self._prompt_ids: torch.Tensor | None = None
        self.prefill_rows = prefill_rows
        self._labels = label_modules(self.model) if capture_attention else {}
        self._decoder = Decoder(self.tokenizer)
        self._inputs = ForwardInputs(self.model)
        self.info = _session_info(loaded, settings)
        self._windows = () if self.family == "t5" else layer_windows(models.decoder_config(self.model.config))
        """Each layer's sliding window or None, for the cache's entries (``cache_stats.layer_windows``)."""
        self._state = None
        self._rows = RowStore()
        self._prepared_at = (0, 0)
        """The row store's bytes written and the steps made, at the last ``prepare_next``."""
        self._rng = RngHistory(input_device(self.model))
        self._layers = LayerCapture(self.model, layer_capture)
        self._residuals: dict[int, tuple] = {}  # step -> (LayerCaptureResult or REPLAY, chosen id)
        self._deferred = DeferredRows()
        self._records = WaitingRecords()
        self._made_later: list[StepRecord] = []
        """Records made by ``_complete``, returned by the next ``complete_waiting``."""
        self._can_defer = False

    @property
    def finished(self) -> bool:
        return self._state is None or self._state.finished

    @_INFERENCE
    def start(self) -> PromptRecord:
        """Tokenize, let ``generate`` set up (T5: run the encoder), prefill (decoder-only)."""
        self._complete()  # the old history's records keep their rows
        self._made_later = []  # records of the old history no caller collected
        if self.settings.seed is not None:
            torch.manual_seed(self.settings.seed)
        began = time.perf_counter()
        prompt_ids = self.encode_prompt().to(input_device(self.model))
        self._rows = RowStore()  # a new store per run: the old history keeps its own alive
        self._residuals = {}
        recorder = AttentionRecorder(self._labels, self._rows, max_rows=self.prefill_rows, stream=True)
        with recording(recorder):
            prepared = prepare(self.model, prompt_ids, self.settings.generate_kwargs(self.tokenizer))
        self._state = _State(prepared)
        self._rng.clear()
        self._can_defer = tensor_parallel_ranks() == 1 and only_appends(generation_cache(self._state.model_kwargs))
        if self.family == "llama":
            host_copy = HostCopy()
            with self._rows.joining(host_copy):
                outputs, tensors = self._forward(recorder, host_copy)
            host_copy.copy()
            self._state.pending = (outputs, tensors(), recorder, self._layers.last)
            # Rewinding to step 0 chooses again from the prefill: keep its last logits only, and
            # its layers' capture, which step 0's lens reads (the capture made last may be a later step's).
            self._state.prefill = (_LastLogits(outputs.logits[:, -1:].clone()), *self._state.pending[1:])
        record = self._prompt_record(prompt_ids, recorder, time.perf_counter() - began)
        self._prepared_at = (self._rows.bytes_written, 0)  # prepare_next sizes steps, not the prompt
        return record

    @_INFERENCE
    def step(self, force: int | None = None, rows_later: bool = False, record_later: bool = False,
             layers_later: bool | None = None, scores_in_step: bool = False) -> StepRecord | None:
        """Generate one token and return everything recorded about it (``record_later``: None).

        Args:
            force: choose this token id instead of argmax or sampling. The processors still
                run (their stages are recorded); the record says ``chosen_by="forced"``.
            rows_later: let the attention rows wait for :meth:`complete_waiting`, which makes
                the waiting steps' together (a continue: see ``DeferredRows``). Until then the
                record's rows read as zeros: complete them before showing or writing it (a plain
                ``complete_waiting`` returns with every row written; otherwise wait for
                :meth:`rows_written`). A decode step's layers are not captured then: the step's
                forward pass runs again when :meth:`lens` or :meth:`layer_tensors` first asks
                for them (:meth:`_replayed`).
            record_later: a continue that no breakpoint reads: the rows wait, and
                so does the record itself (its stages' summary is made with the other waiting
                steps': ``waiting_records``). :meth:`complete_waiting` returns it.
            layers_later: whether a decode step's layers wait for :meth:`_replayed` instead of
                being captured in the step (None: as ``rows_later``). Like the rows' waiting, only
                where the cache only appends; elsewhere they are captured in the step.
            scores_in_step: with ``rows_later``, this step is completed alone, right after it
                (the ``n`` key: ``complete_waiting`` follows): each layer's product ``q @ k.T``
                is made in the step, right after SDPA read the layer's keys and left them in
                the processor's cache; only the softmax of all layers waits. A continue's steps
                leave the products to the hand-over, which reads each layer's keys once for all
                its steps (``DeferredRows``).
        """
        if self._state is None:
            raise UserError("call start() before step(): it encodes the prompt")
        if self.finished:
            raise UserError("generation has finished: start() begins again, rewind(step) goes back to a step")
        if force is not None:
            force = _as_index(force, "force", "a token id")  # before anything changes: a float id would stay in the ids
            if not 0 <= force < self.info_vocab:
                raise UserError(f"cannot force token id {force}: the vocabulary has ids 0 to {self.info_vocab - 1}")
        rows_later = rows_later or record_later
        if not rows_later:
            self._complete()  # the waiting steps must stay consecutive
        elif self._deferred.interrupted or self._waiting_bytes >= MAX_WAITING_BYTES:
            # What the waiting steps hold stays bounded. Their rows may be written behind: the
            # caller waits for rows_written before it reads them, as after a hand-over.
            self._complete(write_behind=True)
        began = time.perf_counter()
        state = self._state
        if state.config.do_sample:
            self._rng.save(state.generated)  # the generator before this step samples: rewind restores it
        # Everything the step records joins one device-to-host copy (engine/host_copy.py).
        host_copy = HostCopy()
        with self._rows.joining(host_copy):
            if state.pending:  # decoder-only step 0: the prefill already ran in start()
                outputs, tensors, recorder, layers = state.pending
                described = lambda: tensors  # noqa: E731 - described at the prefill
            else:
                later = rows_later and self._can_defer
                recorder = AttentionRecorder(self._labels, self._rows, deferred=self._deferred if later else None,
                                             scores_in_step=scores_in_step)
                skip_layers = (rows_later if layers_later is None else layers_later) and self._can_defer
                outputs, described = self._forward(recorder, host_copy, skip_layers)
                layers = self._layers.last
            state.pending = None
            chosen = self._choose(outputs, force, host_copy, summarise=not record_later)
            del outputs  # the prefill's logits can be large; keep nothing of the forward pass
            query_len = state.input_ids.shape[1] - 1
            rows = (attention_rows(recorder, "self", query_len, last_row_only=True, late=record_later),
                    attention_rows(recorder, "cross", query_len, last_row_only=True, late=record_later))
        host_copy.copy()
        # The tensors' infos, like a waiting record's stages, are made when first read.
        fields = self._record_fields(chosen, LazyTuple(described), rows, began, layers)
        if record_later:
            self._records.add(fields, chosen.stages, chosen.next_token)
            return None
        stages, (chosen_prob, raw_above) = stages_from(chosen.summaries, chosen.numbers.array[0], self._decoder.token)
        return StepRecord(**fields, stages=stages, chosen_prob=chosen_prob, raw_rank=int(raw_above) + 1)

    @_INFERENCE
    def complete_waiting(self, write_behind: bool = False) -> tuple[StepRecord, ...]:
        """Compute and store the attention rows of every step made with ``rows_later`` or
        ``record_later``, and make the records of those made with ``record_later``, all in one
        device-to-host copy.

        Args:
            write_behind: let the rows' writes to the row store run on its writer thread while
                the next steps run (a continue's hand-over), where the writer has a core of its
                own (:attr:`writes_behind`): until :meth:`rows_written` says so, rows of these
                steps may still read as zeros. Without it, every row is written (those of an
                earlier ``write_behind`` too) when this returns.

        Returns:
            The records of the steps made with ``record_later`` since the last call, in order
            (those a step, a rewind or the budget completed in between included).
        """
        self._complete(write_behind)
        made, self._made_later = tuple(self._made_later), []
        return made

    def note_hit(self, step: int, note: dict) -> None:
        """Nothing to keep: a Stepper records nothing (``RecordingEngine`` writes hits)."""

    def note_resumed(self, step: int, records: tuple[StepRecord, ...]) -> None:
        """Nothing to keep: a Stepper records nothing (``RecordingEngine`` writes resumes)."""

    def prepare_next(self) -> None:
        """Between engine calls (the TUI calls it once a call's steps are handed over): give
        the row store's next step its pages now (``RowStore.prepare``), sized by the rows
        written a step since the last call, with room for a key more a row (nothing once
        generation has finished). The step then writes its rows into pages the file has, off
        the time the person waits for."""
        written, generated = self._rows.bytes_written, self._state.generated if self._state else 0
        (last_written, last_generated), self._prepared_at = self._prepared_at, (written, generated)
        if generated > last_generated and written > last_written and not self.finished:
            per_step = (written - last_written) // (generated - last_generated)
            self._rows.prepare(per_step + per_step // 64 + 4096)

    def rows_written(self, wait: bool = False) -> bool:
        """Whether every row computed so far is in the row store (``wait``: wait until it is,
        raising a write's error). Only ``complete_waiting(write_behind=True)`` leaves any out."""
        if wait:
            self._rows.settle()
        return self._rows.written()

    def _writes_behind_here(self) -> bool:
        if self.writes_behind is not None:
            return self.writes_behind
        return writing_behind_pays(self._rows, input_device(self.model), self._deferred.waiting_bytes)

    def _complete(self, write_behind: bool = False) -> None:
        write_behind = write_behind and self._writes_behind_here()
        rows_wait = self._deferred.pending or self._deferred.interrupted
        if rows_wait or len(self._records):
            with self._rows.writing_behind(write_behind):
                host_copy = HostCopy()
                with self._rows.joining(host_copy):
                    if rows_wait:
                        self._deferred.complete(self._rows, host_copy)
                    records = (self._records.complete(self._state.stage_names, self.top, self._decoder.token,
                                                      host_copy) if len(self._records) else list)
                host_copy.copy()
            self._made_later.extend(records())
        if not write_behind:
            self._rows.settle()  # whatever reads next (a pane, a rewind, the lens) reads written rows

    @property
    def _waiting_bytes(self) -> int:
        return self._deferred.waiting_bytes + self._records.waiting_bytes

    @_INFERENCE
    def rewind(self, step: int) -> None:
        """Go back to just before ``step`` (0-based): the next ``step()`` returns that step again.

        The cache is cropped with transformers' own ``Cache.crop`` (T5: its self-attention half
        only; the encoder's keys and values stay), the ids and the per-step model inputs are
        truncated, and the random generator is restored to its state before that step sampled,
        so stepping again reproduces the same tokens. No forward pass runs.

        Raises:
            UserError: ``step`` is not one of ``0 .. steps generated``.
        """
        state = self._state
        if state is None:
            raise UserError("call start() before rewind()")
        step = _as_index(step, "rewind", "a step number")
        if not 0 <= step <= state.generated:
            raise UserError(f"cannot rewind to step {step}: steps 0 to {state.generated} can be rewound to")
        self._complete()  # before the crop: the waiting rows read the keys as they are
        rewind_state(state, step, decoder_only=self.family == "llama")
        # The steps from here on are another branch's now: their captures (or the keys a replay
        # would read) are not the live session's. The step made again here gets its own.
        self._residuals = {index: entry for index, entry in self._residuals.items() if index < step}
        self._rng.restore(step)

    def first_token(self, text: str) -> tuple[int, str]:
        """The id and display text of the first token the tokenizer makes of ``text`` (for forcing)."""
        if not isinstance(text, str):
            raise UserError(f"first_token needs a text (a str), not {type(text).__name__}")
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "…"  # the message stays one line
        if not ids:
            raise UserError(f"{shown} makes no token: type some text to force")
        unknown = self.tokenizer.unk_token_id
        if unknown is not None and ids[0] == unknown and self.tokenizer.unk_token not in text:
            # A word-level vocabulary (the demo T5's) maps an unknown word to <unk>: forcing it
            # would force <unk>, not the word.
            raise UserError(f"{shown} is not in the model's vocabulary: its first token is "
                            f"{self.tokenizer.unk_token}; type another word, or {self.tokenizer.unk_token} itself")
        return ids[0], self._decoder.token(ids[0])

    @property
    def info_vocab(self) -> int:
        """Size of the model's output distribution (``d_vocab``)."""
        return self.model.get_output_embeddings().weight.shape[0]

    @_INFERENCE
    def lens(self, step: int, top: int = 3) -> tuple[LayerLens, ...]:
        """The logit lens of every decoder layer at ``step`` (one batched matmul; run it off the UI thread)."""
        top = _as_index(top, "top", "a number of tokens")
        if not 1 <= top <= self.info_vocab:
            raise UserError(f"top must be 1 to {self.info_vocab} (the vocabulary), not {top}")
        captured, chosen_id = self._captured(step)
        return logit_lens(self.model, captured.residual, chosen_id, self._decoder.token, top)

    @_INFERENCE
    def layer_tensors(self, step: int, layer: int) -> tuple[TensorInfo, ...]:
        """What decoder layer ``layer`` saw at ``step``: shapes, dtypes and a few values (no model work)."""
        layer = _as_index(layer, "layer", "a layer number")
        if not 0 <= layer < self.info.layers:
            raise UserError(f"layer {layer} is not one of the model's layers: 0 to {self.info.layers - 1}")
        return self._captured(step)[0].tensors(layer)

    def _captured(self, step: int) -> tuple:
        step = _as_index(step, "step", "a step number")
        made = self._state.generated if self._state is not None else 0
        if not 0 <= step < made:
            steps = f"steps 0 to {made - 1} are" if made else "no step is"
            raise UserError(f"step {step} has not been made in the live session: {steps}")
        captured, chosen_id = self._residuals.get(step, (None, None))
        if captured is REPLAY:
            captured = self._replayed(step)
            self._residuals[step] = (captured, chosen_id)
        if captured is None:
            raise UserError(f"no layer capture for step {step} (layer capture: {self._layers.mode})")
        return captured, chosen_id

    @_INFERENCE
    def _replayed(self, step: int) -> LayerCaptureResult:
        """The layer capture of decode step ``step``, made by running its forward pass again on
        a copy of the state before it (``rewind.state_before``): the same token, positions and
        keys, so the same tensors as a capture made in the step (``tests/engine/test_layer_replay.py``).

        A continue's decode steps capture no layers: hooking every layer cost them 9-15% of their
        time on the demo T5 even with the capture's stacking left to the hand-over. The Layers
        view asks for one step at a time, and a replay costs one forward pass.
        """
        state = state_before(self._state, step, decoder_only=self.family == "llama")
        with self._layers.capture(self._rows, copy=False):
            model_inputs = self.model.prepare_inputs_for_generation(
                state.input_ids, next_sequence_length=1, **state.model_kwargs)
            self.model(**model_inputs, return_dict=True)
        return self._layers.last

    # -- one iteration of transformers' _sample ---------------------------------------------

    def _forward(self, recorder: AttentionRecorder, host_copy: HostCopy, skip_layers: bool = False):
        """One forward pass exactly as ``_sample`` makes it (``skip_layers``, a decode step whose
        layers wait: they are not captured; :meth:`_replayed` makes the capture when asked for).

        Returns:
            ``(outputs, described)``: ``described()``, called once ``host_copy`` is made, gives
            the TensorInfos of the pass's inputs and logits.
        """
        state, model = self._state, self.model
        if skip_layers and state.prefilled and self._layers.mode != "off":
            layers = self._layers.skipped()
        else:
            layers = self._layers.capture(self._rows, copy=not state.prefilled)
        seen = Seen(host_copy)
        with recording(recorder), layers:
            if not state.prefilled:
                with self._inputs.watch(seen):  # _prefill calls the model itself
                    outputs = model._prefill(state.input_ids, state.config, state.model_kwargs)
                state.prefilled = True
            else:
                model_inputs = model.prepare_inputs_for_generation(
                    state.input_ids, next_sequence_length=1, **state.model_kwargs
                )
                seen.see(model_inputs)  # what the model receives (a pre-hook each step costs more)
                outputs = model(**model_inputs, return_dict=True)
            state.model_kwargs = model._update_model_kwargs_for_generation(
                outputs, state.model_kwargs, is_encoder_decoder=model.config.is_encoder_decoder
            )
        logits = describe_later({"logits": outputs.logits}, host_copy)
        inputs = seen.tensors
        return outputs, lambda: inputs() + logits()

    def _choose(self, outputs, force: int | None, host_copy: HostCopy, summarise: bool = True) -> "_Chosen":
        """Processors, then argmax, sampling or the forced id; nothing is read from the device.
        (``summarise=False``: the stages' scores are kept for ``waiting_records`` instead.)"""
        state = self._state
        logits = outputs.logits[:, -1].to(copy=True, dtype=torch.float32, device=state.input_ids.device)
        if summarise:
            scores, summaries = run_stages(state.processors, state.input_ids, logits, self.top)
            stages = None
        else:
            scores, stages = stage_scores(state.processors, state.input_ids, logits)
            summaries = None
        # The final probabilities give the record its chosen_prob and sampling its draw; a
        # waiting record's chosen_prob is computed with the other waiting steps'.
        probs = torch.nn.functional.softmax(scores, dim=-1) if summarise or state.config.do_sample else None
        if force is not None:
            if state.config.do_sample:
                draw_set_aside(probs)  # the generator moves on as generate()'s does with the token imposed
            next_tokens, chosen_by = torch.tensor([force], device=scores.device), "forced"
        elif state.config.do_sample:
            next_tokens = sample(probs, step=state.generated, processors=state.processors,
                                 input_ids=state.input_ids, logits=logits, settings=self.settings,
                                 host_copy=host_copy)
            chosen_by = "sample"
        else:
            next_tokens, chosen_by = torch.argmax(scores, dim=-1), "argmax"
        state.input_ids = torch.cat([state.input_ids, next_tokens[:, None]], dim=-1)
        state.generated += 1
        stop = state.stopping_criteria(state.input_ids, scores)
        numbers = None if summaries is None else host_copy.add(
            pack_stages(summaries, chosen_numbers(logits, probs, next_tokens)))
        return _Chosen(
            chosen_by=chosen_by,
            summaries=summaries,
            numbers=numbers,
            token_id=host_copy.add(next_tokens[:1]),
            stop=host_copy.add(stop[:1]),
            stages=stages,
            next_token=None if stages is None else next_tokens[:1],
        )

    # -- records -----------------------------------------------------------------------------

    def encode_prompt(self) -> torch.Tensor:
        """``[1, prompt_tokens]`` the ids the model reads first: the prompt, in the chat template
        when the session applies it (on the CPU). Encoded once: the session's check that the
        prompt fits and every start (a restart included) read the same ids."""
        if self._prompt_ids is None:
            if not self.chat:
                self._prompt_ids = self.tokenizer(self.prompt, return_tensors="pt").input_ids
            else:
                messages = [{"role": "user", "content": self.prompt}]
                self._prompt_ids = self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
                )["input_ids"]
            if self._prompt_ids.shape[-1] == 0:  # generate() would fail deep inside the model
                self._prompt_ids = None
                raise UserError(f"the prompt {self.prompt!r} encodes to no token (the tokenizer adds none of its "
                                "own, such as a start token): give it some text")
        return self._prompt_ids.clone()  # the caller's own: nothing it does reaches the next start

    def _prompt_record(self, prompt_ids, recorder, elapsed: float) -> PromptRecord:
        ids = prompt_ids[0].tolist()
        state = self._state
        is_t5 = self.family == "t5"
        start_id = int(state.input_ids[0, 0]) if is_t5 else None
        return PromptRecord(
            family=self.family,
            prompt=self.prompt,
            input_ids=tuple(ids),
            input_tokens=tuple(self._decoder.token(i) for i in ids),
            decoder_start_id=start_id,
            decoder_start_token=self._decoder.token(start_id) if is_t5 else None,
            tensors=self._prompt_tensors(prompt_ids),
            attention=attention_rows(recorder, "encoder" if is_t5 else "self", query_len=len(ids)),
            cache=None if is_t5 else self._cache_stats(),
            elapsed_s=elapsed,
        )

    def _prompt_tensors(self, prompt_ids):
        """T5: the encoder's input and output. Decoder-only: what the prefill forward received."""
        if self.family == "t5":
            return describe({"input_ids": prompt_ids}) + self._inputs.encoder_tensors(self._state.model_kwargs)
        return self._state.pending[1]

    def _record_fields(self, chosen: "_Chosen", tensors, rows, began: float, layers) -> dict:
        """The record of the step just chosen, less its stages, ``chosen_prob`` and ``raw_rank``
        (``chosen``'s parts are on the host now): what must be read while the step is current.
        ``layers``: the capture of the forward pass the step chose from (or ``REPLAY``)."""
        state = self._state
        token_id = int(chosen.token_id.array[0])
        state.stopped = bool(chosen.stop.array[0])
        self._residuals[state.generated - 1] = (layers, token_id)
        return dict(
            step=state.generated - 1,
            token_id=token_id,
            token=self._decoder.token(token_id),
            chosen_by=chosen.chosen_by,
            tensors=tensors,
            cache=self._cache_stats(),
            attention=rows[0],
            cross_attention=rows[1],
            finished=state.finished,
            finish_reason=finish_reason(state, token_id, self.settings) if state.finished else None,
            elapsed_s=time.perf_counter() - began,
        )

    def _cache_stats(self):
        return cache_stats(generation_cache(self._state.model_kwargs), self.info.query_heads, self.info.kv_heads,
                           self._windows)


def _as_index(value, what: str, kind: str) -> int:
    """``value`` as a Python int (numpy and 0-d torch integers too), or a UserError naming
    ``what``: a float or a bool would reach the ids or the cache before anything failed."""
    if isinstance(value, torch.Tensor):
        whole = value.ndim == 0 and not value.is_floating_point() and not value.is_complex()
        if whole and value.dtype != torch.bool:
            return int(value)
    elif is_index(value):
        return value.__index__()
    raise UserError(f"{what} needs {kind} (an int), not {value!r}")


class _State:
    """Mutable loop state of one session: what ``_sample`` keeps in local variables."""

    def __init__(self, prepared):
        self.input_ids = prepared.input_ids
        self.processors = prepared.processors
        self.stage_names = stage_names(prepared.processors)
        self.stopping_criteria = prepared.stopping_criteria
        self.config = prepared.generation_config
        self.model_kwargs = prepared.model_kwargs
        self.prefilled = False
        self.pending = None
        self.prefill = None
        """Decoder-only: the prefill's (last logits, tensors, recorder, layer capture), to choose
        step 0 again."""
        self.generated = 0
        self.stopped = False
        eos = self.config._eos_token_tensor
        self.eos_ids = () if eos is None else tuple(eos.flatten().tolist())
        """The end-of-sequence ids, read once (``finish_reason``)."""

    @property
    def finished(self) -> bool:
        return self.stopped


@dataclass
class _Chosen:
    """What ``_choose`` decided, its numbers still in the step's host copy."""

    chosen_by: str
    summaries: StageTensors | None
    numbers: Part | None
    """:func:`pack_stages` of the stages and the chosen token's probability and raw rank."""
    token_id: Part
    stop: Part
    stages: torch.Tensor | None = None
    """Unsummarised: every stage's ``[stages, d_vocab]`` scores (the record waits)."""
    next_token: torch.Tensor | None = None
    """``[1]`` the chosen id, on the device."""


class _LastLogits:
    """Stands in for the prefill's outputs: ``logits [1, 1, d_vocab]`` of the last prompt position."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits


def _session_info(loaded: models.LoadedModel, settings: GenerationSettings) -> SessionInfo:
    config = models.decoder_config(loaded.model.config)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "num_heads")
    layers = getattr(config, "num_decoder_layers", None) or config.num_hidden_layers
    return SessionInfo(
        model=loaded.source,
        family=loaded.family,
        model_type=loaded.model.config.model_type,
        device=str(loaded.model.device),
        dtype=str(loaded.model.dtype).removeprefix("torch."),
        layers=layers,
        query_heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        max_new_tokens=settings.max_new_tokens,
        settings=settings.changed(),
    )
