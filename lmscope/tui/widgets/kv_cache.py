"""KV cache: sizes after the selected step, per layer and in total, and how they grew.

Grouped-query attention shows as fewer kv heads than query heads; for T5 the self-attention
cache (grows each step) and the cross-attention cache (encoder keys, fixed) are shown apart.
"""

from __future__ import annotations

from itertools import groupby

from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Sparkline, Static

from lmscope.engine.records import CacheStats, LayerCache
from lmscope.tui.identity import Same
from lmscope.tui.draw.render import human_bytes, plain_text, printable
from lmscope.tui.view import View
from lmscope.tui.widgets.tab_pane import CatchUpWhenShown


def heads_line(stats: CacheStats) -> str:
    """``9 query heads / 3 kv heads: grouped-query, 3 query heads share each kv head``."""
    q, kv = stats.query_heads, stats.kv_heads
    if kv and kv < q:
        kind = "multi-query" if kv == 1 else f"grouped-query, {q // kv} query heads share each kv head"
    else:
        kind = "multi-head, one kv head per query head"
    return f"{q} query heads / {kv} kv heads: {kind}"


def summary(stats: CacheStats, where: str) -> Text:
    """Totals by kind and the head layout."""
    text = Text.assemble((printable(stats.cache_class or "cache"), "bold"), f" after {where}\n")
    kinds = (("self", "self-attention (grows)"), ("cross", "cross-attention (fixed)"))
    for kind, label in kinds:
        if any(entry.kind == kind for entry in stats.layers):
            text.append(f"{label:<24}{human_bytes(stats.bytes_of(kind)):>10}\n")
    text.append(f"{'total':<24}{human_bytes(stats.total_bytes):>10}\n", style="bold")
    by_device = stats.bytes_by_device()
    if len(by_device) > 1:  # a device map spread the layers (and so their caches) over devices
        for device, size in by_device.items():
            text.append(f"{'  on ' + printable(device or '?'):<24}{human_bytes(size):>10}\n")
    text.append(heads_line(stats), style="dim")
    return text


def layer_table(stats: CacheStats) -> Table:
    """Layers grouped into runs with the same kind, shapes and size (usually one or two rows)."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold dim")
    for name in ("layers", "kind", "key [b,kv,pos,d]", "value", "dtype", "each"):
        table.add_column(name, no_wrap=True)

    def same(entry: LayerCache) -> tuple:
        return entry.kind, entry.window, entry.key_shape, entry.value_shape, entry.dtype, entry.bytes

    for (kind, window, key, value, dtype, size), run in groupby(stats.layers, key=same):
        layers = [entry.layer for entry in run]
        span = str(layers[0]) if len(layers) == 1 else f"{layers[0]}-{layers[-1]}"
        # a sliding layer attends its window's keys; the cache keeps them all (rewind needs them)
        kind = f"{kind}, window {window}" if window else kind
        cells = (span, kind, str(list(key)), str(list(value)), dtype, human_bytes(size))
        table.add_row(*(plain_text(cell) for cell in cells))  # a recording's file holds any kind
    return table


class KVCachePane(CatchUpWhenShown, VerticalScroll):
    """Cache summary, a sparkline of the total over the steps up to the selection, per-layer runs."""

    current: reactive[View | None] = reactive(None, layout=False, repaint=False)
    """The View to show; set by the app (each pane decides when to repaint)."""
    _shown: tuple | None = None

    def compose(self):
        """Summary, growth sparkline, layer table."""
        yield Static(id="kv-summary")
        yield Static("growth of the total over the steps", id="kv-growth-label", classes="dim")
        yield Sparkline([], id="kv-growth", summary_function=max)
        yield Static(id="kv-layers")

    def show_view(self, view: View | None) -> None:
        """Update when the selection or the history changed."""
        # By record, not index: another branch shown at the same index has its own steps.
        if view is None or view.prompt is None or (Same(view.prompt), Same(view.selected)) == self._shown:
            return
        self._shown = (Same(view.prompt), Same(view.selected))
        record = view.selected
        stats = record.cache if record is not None else view.prompt.cache
        where = f"step {view.index + 1}" if record is not None else "the prompt"
        if stats is None:
            note = Text("no cache yet (T5 fills it at the first step)", style="dim")
            self.query_one("#kv-summary", Static).update(note)
            self.query_one("#kv-layers", Static).update("")
        else:
            self.query_one("#kv-summary", Static).update(summary(stats, where))
            self.query_one("#kv-layers", Static).update(layer_table(stats))
        totals = [s.cache.total_bytes for s in view.steps[: view.index + 1] if s.cache is not None]
        self.query_one("#kv-growth", Sparkline).data = totals or [0]
