"""Layers: the selected step, layer by layer (the logit lens), and stepping into one layer.

One row per decoder layer: the lens's top-3 tokens, p(chosen) as a bar, the chosen token's rank
and the residual norm; beside it a chart of p(chosen) and the entropy over the layers, where the
model made up its mind. The row cursor is the View's layer (``[`` ``]``, or up/down here), so the
Attention pane follows it; ``enter`` lists the tensors that layer saw at this step.

The lens is one batched matmul on the model: it runs on the engine thread, and the result comes
back as a message; the UI thread never calls torch. A replay (``lmscope open``) shows the lens
recorded with a step, where there is one (no layer tensors: a recording keeps none).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from lmscope.engine.recording import NO_LAYER_CAPTURES, NO_LAYER_TENSORS
from lmscope.engine.records import TensorInfo
from lmscope.tui.draw.render import printable, quoted_token, token_text, truncate
from lmscope.tui.view import View
from lmscope.tui.workers import on_engine_thread
from lmscope.tui.widgets.tab_pane import CatchUpWhenShown
from lmscope.tui.widgets.variables import preview

BAR = 10
"""Cells of the p(chosen) bar."""
TOKEN_WIDTH = 9
"""Cells of each lens token in the table."""
KEEP = 64
"""Lenses kept per session, so browsing back and forth does not compute them again."""


@dataclass
class LensComputed(Message):
    """The worker computed the lens of one step (or failed to)."""

    key: tuple
    lens: tuple = ()
    tensors: tuple = ()
    error: Exception | None = None


def bar(prob: float, width: int = BAR) -> str:
    """``█████▌    `` : ``prob`` of ``width`` cells, in eighths."""
    eighths = round(max(0.0, min(1.0, prob)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")).ljust(width)


def top_cell(entry, width: int = TOKEN_WIDTH) -> Text:
    """`` Paris .62  the .10  …``: token texts made visible and cut to ``width``, never parsed as markup."""
    text = Text()
    for i, cand in enumerate(entry.top):
        if i:
            text.append(" ")
        text.append(truncate(token_text(cand.token), width))
        text.append(f" {cand.prob:.2f}".replace("0.", ".").replace("1.00", "1.0"), style="dim")
    return text


def tensor_text(layer: int, tensors: tuple[TensorInfo, ...]) -> Text:
    """The tensors of one layer: name, shape, dtype, values at ``[0, ..., -1, :4]``."""
    text = Text(f"layer {layer} at this step (values at [0, …, -1, :4])\n", style="bold")
    for info in tensors:
        values = preview(TensorInfo(info.name, info.shape, info.dtype, tuple(round(v, 4) for v in info.preview)))
        text.append(f"{printable(info.name):<18}{str(list(info.shape)):<18}{printable(info.dtype):<10}")
        text.append(values + "\n", style="dim")
    return text


class LayersPane(CatchUpWhenShown, Vertical):
    """The logit lens of the selected step, a chart over layers, and the tensors of one layer."""

    DEFAULT_CSS = """
    LayersPane { height: 1fr; }
    LayersPane #layers-title { height: 1; padding: 0 1; }
    LayersPane #layers-top { height: 1fr; }
    LayersPane #layers-table { width: auto; max-width: 75%; height: 1fr; }
    LayersPane #layers-chart { width: 1fr; min-width: 30; height: 1fr; }
    LayersPane #layer-tensors { height: auto; max-height: 16; padding: 0 1; display: none; }
    LayersPane.-tensors #layer-tensors { display: block; }
    """

    current: reactive[View | None] = reactive(None, layout=False, repaint=False)
    """The View to show; set by the app."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._lenses: dict[tuple, tuple] = {}
        self._shown: tuple | None = None
        self._asked: tuple | None = None

    def compose(self) -> ComposeResult:
        """A title line, the table and the chart side by side, the tensors of a layer below them."""
        yield Static(id="layers-title")
        with Horizontal(id="layers-top"):
            yield DataTable(id="layers-table", cursor_type="row", zebra_stripes=True)
            yield PlotextPlot(id="layers-chart")
        yield Static(id="layer-tensors")

    def on_mount(self) -> None:
        """Columns once."""
        self.query_one(DataTable).add_columns("layer", "lens top-3", "p(chosen)", "rank", "norm")

    def lenses_of(self, prompt, steps) -> dict[int, tuple]:
        """The lenses this pane holds for ``steps`` (of the session that began with ``prompt``), by
        step number: what ``w`` writes beside them."""
        return {record.step: self._lenses[prompt, record][0] for record in steps if (prompt, record) in self._lenses}

    @staticmethod
    def key_of(view: View | None) -> tuple | None:
        """What identifies a step's lens: the session's prompt and the step's own record (records
        compare by identity; after a rewind another record takes the same index)."""
        if view is None or view.prompt is None or view.selected is None:
            return None
        return view.prompt, view.selected

    def show_view(self, view: View | None) -> None:
        """Show the selected step's lens (asking a worker for it once), with the View's layer selected."""
        key = self.key_of(view)
        if key is None:
            self._clear("the prompt is selected: select a generated step to step into it"
                        if view is not None and view.prompt is not None else "waiting for the model…")
            return
        if key not in self._lenses:
            unheld = self._not_held(view)
            if unheld:
                self._clear(unheld)
                return
            if self._asked != key and self.app.engine is not None:
                self._asked = key
                self.compute(self.app.engine, key, view.index, view.selected.token)
            self._title(f"step {view.index + 1}: computing the lens…")
            return
        self._fill(view, key)

    def _not_held(self, view: View) -> str | None:
        """Why the engine cannot make the selected step's lens, if it cannot: the lens runs on the
        engine's live cache, which holds the live branch's steps only (a lens computed while its
        step was live is kept, and shown without asking). A replay has the lenses it recorded, of
        any branch's steps."""
        engine, record = self.app.engine, view.selected
        if not self.app.live_engine:
            return None if engine.has_lens_of(record) else NO_LAYER_CAPTURES
        live = self.app.branch_tree.live_branch.steps
        if record.step < len(live) and live[record.step] is record:
            return None
        return (f"step {record.step + 1} is on branch {view.branch}, which the model no longer holds: "
                "t, then r resumes it, to step into its layers")

    def _title(self, text: str) -> None:
        self.query_one("#layers-title", Static).update(Text(text, style="dim"))

    def _clear(self, message: str) -> None:
        self._shown = None
        self.query_one(DataTable).clear()
        self._title(message)
        self.query_one("#layer-tensors", Static).update("")
        self.remove_class("-tensors")

    @on_engine_thread(group="lens")
    def compute(self, engine, key: tuple, step: int, token: str) -> None:
        """The lens and every layer's tensors of ``step`` (one batched matmul), on the engine
        thread: after the engine call running now (a continue's steps are not slowed by it, and
        under tensor parallel every rank sees the calls in one order). A lens asked for while a
        continue ran, and no longer the one the pane waits for, is skipped."""
        if key != self._asked:
            return
        try:
            if getattr(engine, "live", True):
                lens = engine.lens(step)
                tensors = tuple(engine.layer_tensors(step, layer) for layer in range(len(lens)))
            else:  # a replay has the recorded lens of the step's own record; its tensors are not kept
                lens, tensors = engine.lens_of(key[1]), ()
        except Exception as error:  # shown in the pane; the app keeps running
            self.post_message(LensComputed(key, error=error))
            return
        self.post_message(LensComputed(key, lens, tensors))

    def on_lens_computed(self, message: LensComputed) -> None:
        """Keep the lens; show it if its step is still the selected one."""
        message.stop()
        if message.error is not None:
            self._title(printable(f"lens failed: {type(message.error).__name__}: {message.error}"))
            return
        if len(self._lenses) >= KEEP:
            self._lenses.pop(next(iter(self._lenses)))
        self._lenses[message.key] = (message.lens, message.tensors)
        if self.key_of(self.current) == message.key and self.is_on_screen:
            self._fill(self.current, message.key)

    def _fill(self, view: View, key: tuple) -> None:
        lens, tensors = self._lenses[key]
        table = self.query_one(DataTable)
        if self._shown != key:
            self._shown = key
            table.clear()
            for entry in lens:
                table.add_row(
                    Text(str(entry.layer)), top_cell(entry),
                    Text.assemble((bar(entry.chosen_prob), "green"), f" {entry.chosen_prob:.3f}"),
                    Text(str(entry.chosen_rank)), Text(f"{entry.norm:.1f}"), key=str(entry.layer),
                )
            self._chart(lens, view.selected.token)
        layer = min(view.layer, len(lens) - 1)
        if table.cursor_row != layer:
            table.move_cursor(row=layer)
        self._title(f"step {view.index + 1} · chose {quoted_token(view.selected.token)} · "
                    f"layer {layer}/{len(lens) - 1} · [ ] layer · "
                    + ("enter: its tensors" if tensors else "the recorded lens"))
        self.query_one("#layer-tensors", Static).update(
            tensor_text(layer, tensors[layer]) if tensors else Text(NO_LAYER_TENSORS, style="dim"))

    def _chart(self, lens, token: str) -> None:
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        layers = [entry.layer for entry in lens]
        plt.plot(layers, [entry.chosen_prob for entry in lens], label="p(chosen)", marker="braille")
        plt.plot(layers, [entry.entropy for entry in lens], label="entropy", yside="right", marker="braille")
        plt.title(f"p({quoted_token(token)}) and entropy by layer")
        plt.xlabel("layer")
        plot.refresh()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Moving the cursor here selects the layer for every pane (the Attention pane follows).

        A refill (another step's lens) queues one highlight for the row its ``clear`` left the
        cursor on and one for the View's layer, where :meth:`_fill` moves it: only an event for
        the row the cursor is on now is a choice. Acting on the stale one moved the layer back,
        the refill moved the cursor again, and the two events chased each other for good (100%
        of a core, found by the monkey test)."""
        event.stop()
        view = self.current
        if event.cursor_row != event.data_table.cursor_row:
            return
        if view is not None and self._shown is not None and event.cursor_row != view.layer:
            self.app.action_layer(event.cursor_row - view.layer)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """``enter``: show or hide the tensors the layer saw."""
        event.stop()
        self.toggle_class("-tensors")
