"""T5 cross-attention: decoder steps by encoder tokens, for the selected layer and head."""

from __future__ import annotations

from lmscope.tui.draw.attention_rows import Matrix, cross_attention
from lmscope.tui.view import View
from lmscope.tui.widgets.attention import HeatmapPlot


class CrossAttentionPlot(HeatmapPlot):
    """One row per decoder step up to the selection, over the encoder's tokens (fixed keys)."""

    def matrix(self, view: View) -> Matrix | None:
        """Cross-attention rows, or None for a decoder-only model."""
        return cross_attention(view)

    def empty_text(self, view: View | None) -> str:
        """Explain an empty pane: no model yet, a decoder-only model, or no step yet."""
        if view is None or view.prompt is None:
            return "waiting for the model…"
        if view.prompt.family != "t5":
            return "cross-attention exists only in encoder-decoder models (T5)"
        return "step (n) to see the decoder attend to the encoder tokens"
