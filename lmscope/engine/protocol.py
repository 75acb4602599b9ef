"""The interface the TUI and the headless printer drive: the real Stepper and tests' FakeEngine."""

from __future__ import annotations

from typing import Callable, Protocol

from lmscope.engine.records import PromptRecord, SessionInfo, StepRecord


class Engine(Protocol):
    """A generation session that advances one token per call.

    Every method may run torch: callers on a UI thread must call them from a worker thread,
    one call at a time.
    """

    info: SessionInfo
    """The loaded model and settings."""

    @property
    def finished(self) -> bool:
        """True once EOS, a stop string or max_new_tokens ended generation."""
        ...

    def start(self) -> PromptRecord:
        """Begin (or begin again): tokenize, prefill or encode, reset the cache and the seed."""
        ...

    def step(self, force: int | None = None, rows_later: bool = False, record_later: bool = False,
             layers_later: bool | None = None, scores_in_step: bool = False) -> StepRecord | None:
        """Run one forward pass and choose one token (``force``: this id). Raises if finished.

        ``rows_later``: the record's attention rows may wait for :meth:`complete_waiting` (they
        read as zeros until then; a continue completes them before it hands steps over), and
        the step may capture no layers (``lens`` and ``layer_tensors`` then replay the step).
        ``layers_later``: whether the step may leave its layers to that replay (None: as
        ``rows_later``); False captures them in the step, for a Layers pane about to show it.
        ``record_later``: the whole record waits (a continue no breakpoint reads): the step
        returns None and :meth:`complete_waiting` returns the record.
        ``scores_in_step``: the caller completes this step alone, right after it (the ``n``
        key): its waiting rows' products are made in the step, while each layer's keys are
        still in the processor's cache (an engine may ignore it).
        """
        ...

    def complete_waiting(self, write_behind: bool = False) -> tuple[StepRecord, ...]:
        """Fill the attention rows of every step made with ``rows_later`` or ``record_later``
        (a no-op when none waits), and return the records of the steps made
        with ``record_later`` since the last call, in order.

        ``write_behind``: the rows' writes may still run when this returns (a continue's
        hand-over, while the next steps run): nothing may read the steps' rows before
        :meth:`rows_written` is True. Without it every row is written on return.
        """
        ...

    def rows_written(self, wait: bool = False) -> bool:
        """Whether every completed row is written (``wait``: wait until it is; raises a
        failed write's error). An engine that never writes behind always says True."""
        ...

    def prepare_next(self) -> None:
        """Between engine calls (nothing waits for the engine): make ready what the next step
        would otherwise pay for in the step (the row store's pages for its rows). Optional
        work: an engine with nothing to prepare does nothing."""
        ...

    def rewind(self, step: int) -> None:
        """Go back to just before ``step``: the next ``step()`` returns that step again."""
        ...

    def note_hit(self, step: int, note: dict) -> None:
        """A breakpoint held at ``step`` (``breakpoints.hit_note``): a recording keeps it beside
        the step; an engine that records nothing does nothing."""
        ...

    def note_resumed(self, step: int, records: tuple[StepRecord, ...]) -> None:
        """A branch resumed: the steps just made from ``step`` forced ``records``' tokens to
        rebuild the cache, and ``records`` are the live steps again. A recording says so, so that
        a replay shows the branch's own steps; an engine that records nothing does nothing."""
        ...

    def first_token(self, text: str) -> tuple[int, str]:
        """The id and display text of the first token of ``text``, for forcing it."""
        ...

    def lens(self, step: int, top: int = 3) -> tuple:
        """The logit lens (``LayerLens``) of every decoder layer at ``step``; runs the LM head."""
        ...

    def layer_tensors(self, step: int, layer: int) -> tuple:
        """The tensors (``TensorInfo``) decoder layer ``layer`` saw at ``step``."""
        ...


EngineFactory = Callable[[], Engine]
"""Builds an engine; loading weights happens here, so call it from a worker thread."""
