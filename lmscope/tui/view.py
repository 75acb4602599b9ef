"""The View: everything the panes show, as one immutable value.

The app keeps one View and replaces it on every change (a step arrives, a key moves the
selection or the layer); each pane gets it as ``current``. Moving through history or changing
layer and head only builds a new View from records already held: no model work.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lmscope.engine.records import PromptRecord, SessionInfo, StepRecord

STATES = ("loading", "ready", "stepping", "running", "paused", "finished", "error")


@dataclass(frozen=True, eq=False)
class View:
    """What is selected and shown. ``eq=False``: every new View is a change for Textual reactives.

    Attributes:
        info: the loaded model, None while loading.
        prompt: the current session's prompt record, None before ``start`` returned.
        steps: the generated steps so far, in order.
        index: selected step; -1 selects the prompt.
        layer: selected layer for the attention panes.
        head: selected head, or None for the mean over heads.
        show_ids: show token ids beside token texts.
        state: one of ``STATES``.
    """

    info: SessionInfo | None = None
    prompt: PromptRecord | None = None
    steps: tuple[StepRecord, ...] = ()
    index: int = -1
    layer: int = 0
    head: int | None = 0
    show_ids: bool = False
    state: str = "loading"

    @property
    def selected(self) -> StepRecord | None:
        """The selected step, or None when the prompt is selected."""
        return self.steps[self.index] if 0 <= self.index < len(self.steps) else None

    @property
    def layers(self) -> int:
        """Decoder layers to cycle through (from the model info, else from the records)."""
        if self.info is not None:
            return max(1, self.info.layers)
        rows = self.prompt.attention if self.prompt is not None else None
        return rows.layers if rows is not None else 1

    @property
    def heads(self) -> int:
        """Query heads to cycle through."""
        if self.info is not None:
            return max(1, self.info.query_heads)
        rows = self.prompt.attention if self.prompt is not None else None
        return rows.heads if rows is not None else 1

    @property
    def following(self) -> bool:
        """True when the newest step (or the prompt, before any step) is selected."""
        return self.index == len(self.steps) - 1

    def started(self, prompt: PromptRecord) -> View:
        """A fresh session after ``start``: history cleared, the prompt selected."""
        return replace(self, prompt=prompt, steps=(), index=-1, state="ready")

    def appended(self, record: StepRecord) -> View:
        """History with ``record`` added; the selection follows it if it was on the newest step."""
        index = len(self.steps) if self.following else self.index
        return replace(self, steps=(*self.steps, record), index=index)

    def moved(self, delta: int) -> View:
        """Selection moved by ``delta`` steps, clamped to the prompt (-1) and the newest step."""
        return self.selecting(self.index + delta)

    def selecting(self, index: int) -> View:
        """Selection at ``index``, clamped."""
        return replace(self, index=min(max(index, -1), len(self.steps) - 1))

    def with_layer(self, delta: int) -> View:
        """Layer moved by ``delta``, wrapping around."""
        return replace(self, layer=(self.layer + delta) % self.layers)

    def with_head(self, delta: int) -> View:
        """Head moved by ``delta``, wrapping; from the head mean it lands on the first or last head."""
        if self.head is None:
            return replace(self, head=0 if delta > 0 else self.heads - 1)
        return replace(self, head=(self.head + delta) % self.heads)

    def with_mean(self) -> View:
        """Toggle between the mean over heads and head 0."""
        return replace(self, head=None if self.head is not None else 0)

    def with_state(self, state: str) -> View:
        """The same selection in another state."""
        return replace(self, state=state)

    def with_ids(self) -> View:
        """Token ids toggled."""
        return replace(self, show_ids=not self.show_ids)
