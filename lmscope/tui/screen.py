"""The main screen: layout and key bindings. The app owns the actions and the session state.

Layout: status on top; tokens beside the stages (stacked when narrow); a tabbed area for
attention, cross-attention, KV cache and variables; the footer. Breakpoint classes
(``-narrow``/``-wide``, ``-short``/``-tall``) let ``lmscope.tcss`` fit 80x24 as well as 120x40.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import TabbedContent, TabPane

from lmscope.tui.keys import BINDINGS
from lmscope.tui.widgets.attention import AttentionPlot
from lmscope.tui.widgets.cross_attention import CrossAttentionPlot
from lmscope.tui.widgets.footer import DebuggerFooter
from lmscope.tui.widgets.kv_cache import KVCachePane
from lmscope.tui.widgets.layers import LayersPane
from lmscope.tui.widgets.panes import PanesArea
from lmscope.tui.widgets.stages import StagesPane
from lmscope.tui.widgets.status import StatusBar
from lmscope.tui.widgets.tokens import TokensPane
from lmscope.tui.widgets.variables import VariablesPane

PANES = (StatusBar, TokensPane, StagesPane, AttentionPlot, CrossAttentionPlot, KVCachePane, VariablesPane,
         LayersPane)
"""Every widget that takes the View as ``current``."""


class DebuggerScreen(Screen):
    """The one screen of the debugger."""

    BINDINGS = BINDINGS
    AUTO_FOCUS = None  # the app focuses the tokens pane once the panes stop loading
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    def compose(self) -> ComposeResult:
        """Status, tokens and stages, the tabbed panes, the footer."""
        yield StatusBar(id="status")
        with PanesArea(id="panes"):
            with Horizontal(id="top"):
                yield TokensPane(id="tokens")
                yield StagesPane(id="stages")
            with TabbedContent(id="tabs"):
                with TabPane("Attention", id="attention"):
                    yield AttentionPlot(id="attention-plot")
                with TabPane("Cross-attention", id="cross"):
                    yield CrossAttentionPlot(id="cross-plot")
                with TabPane("KV cache", id="kv"):
                    yield KVCachePane(id="kv-cache")
                with TabPane("Variables", id="variables"):
                    yield VariablesPane(id="variables-table")
                with TabPane("Layers", id="layers"):
                    yield LayersPane(id="layers-pane")
        yield DebuggerFooter()

    def on_mount(self) -> None:
        """Pane titles (shown in their borders)."""
        self.query_one(TokensPane).border_title = "Tokens"
        self.query_one(StagesPane).border_title = "Stages"
