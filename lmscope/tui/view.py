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
        notice: a line for the status bar (which breakpoint held, which branch is shown).
        marks: steps where a breakpoint held (marked in the Tokens pane).
        cursor: ``(stage, rank)`` of the Stages pane's candidate cursor, None when hidden.
        branch: the branch whose steps are shown.
        live: False while a branch other than the one the engine holds is shown.
        rate: tokens per second of the continue that is running, None otherwise.
    """

    info: SessionInfo | None = None
    prompt: PromptRecord | None = None
    steps: tuple[StepRecord, ...] = ()
    index: int = -1
    layer: int = 0
    head: int | None = 0
    show_ids: bool = False
    state: str = "loading"
    notice: str = ""
    marks: frozenset[int] = frozenset()
    cursor: tuple[int, int] | None = None
    branch: int = 0
    live: bool = True
    rate: float | None = None

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
        return replace(self, prompt=prompt, steps=(), index=-1, state="ready", notice="", marks=frozenset(),
                       cursor=None, branch=0, live=True)

    def appended(self, record: StepRecord, hit: str | None = None) -> View:
        """History with ``record`` added; the selection follows it if it was on the newest step.

        Args:
            record: the new step.
            hit: the status line of a breakpoint that held at this step: the step is marked
                and selected.
        """
        return self.appended_all(((record, hit),))

    def appended_all(self, steps) -> View:
        """History with every ``(record, hit)`` of ``steps`` added, as :meth:`appended` one by one
        would make it, in one View: a continue hands over tens of steps at a time, and a View a
        step cost 7 µs each and copied the whole history each time. (:meth:`appended` is this
        with one step.)

        The selection follows if it was on the newest step, or from the first step a breakpoint
        held at (it is then the newest, and stays so); the notice is the last hit's.
        """
        records = tuple(record for record, _ in steps)
        if not records:
            return self
        following = self.following or any(hit is not None for _, hit in steps)
        hits = [(record, hit) for record, hit in steps if hit]
        return replace(self, steps=self.steps + records,
                       index=len(self.steps) + len(records) - 1 if following else self.index,
                       marks=self.marks | {record.step for record, _ in hits} if hits else self.marks,
                       notice=hits[-1][1] if hits else self.notice, cursor=None if following else self.cursor)

    def rewound(self, step: int) -> View:
        """History cut before ``step`` (a rewind); the step before it is selected."""
        return replace(self, steps=self.steps[:step], index=step - 1, notice="", cursor=None,
                       marks=frozenset(m for m in self.marks if m < step))

    def showing(self, branch: int, steps: tuple[StepRecord, ...], live: bool, notice: str = "",
                marks: frozenset[int] = frozenset()) -> View:
        """Another branch's steps in every pane (no model work), with its breakpoint ``marks``;
        its last step selected."""
        return replace(self, steps=steps, index=len(steps) - 1, branch=branch, live=live, notice=notice,
                       cursor=None, marks=marks)

    def with_cursor(self, delta: int) -> View:
        """The Stages cursor moved ``delta`` candidates, stage by stage, rank by rank."""
        record = self.selected
        if record is None:
            return self
        cells = [(s, r) for s, stage in enumerate(record.stages) for r in range(len(stage.top))]
        if self.cursor not in cells:
            return replace(self, cursor=cells[0] if delta > 0 else cells[-1])
        return replace(self, cursor=cells[(cells.index(self.cursor) + delta) % len(cells)])

    @property
    def cursor_candidate(self):
        """The Candidate under the Stages cursor, or None."""
        record = self.selected
        if record is None or self.cursor is None:
            return None
        stage, rank = self.cursor
        if stage < len(record.stages) and rank < len(record.stages[stage].top):
            return record.stages[stage].top[rank]
        return None

    def moved(self, delta: int) -> View:
        """Selection moved by ``delta`` steps, clamped to the prompt (-1) and the newest step."""
        return self.selecting(self.index + delta)

    def selecting(self, index: int) -> View:
        """Selection at ``index``, clamped (the Stages cursor goes with the old step)."""
        return replace(self, index=min(max(index, -1), len(self.steps) - 1), cursor=None)

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
        """The same selection in another state (a rate belongs to a running continue only)."""
        return replace(self, state=state, rate=self.rate if state == "running" else None)

    def with_rate(self, rate: float | None) -> View:
        return replace(self, rate=rate)

    def with_ids(self) -> View:
        """Token ids toggled."""
        return replace(self, show_ids=not self.show_ids)
