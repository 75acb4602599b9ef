"""The panes' area: a loading indicator covers it only when loading is slow enough to need one."""

from __future__ import annotations

from textual.containers import Container
from textual.timer import Timer

LOADING_DELAY_S = 0.3
"""How long ``loading`` must last before the indicator covers the panes."""


class PanesArea(Container):
    """The container of every pane but the status bar and footer (``#panes``).

    The app sets ``loading`` while the model loads. A model takes seconds and gets Textual's
    loading indicator; a recorded session (``lmscope open``) is ready in tens of milliseconds,
    and covering its panes only to uncover them at once cost two layouts of the whole screen
    (~25 ms on the 2-core reference machine) before its first frame. The panes say "loading…"
    and "waiting for the model…" meanwhile; while ``loading``, they take no input either way.
    """

    _pending: Timer | None = None

    def set_loading(self, loading: bool) -> None:
        """Cover the panes once ``loading`` has lasted ``LOADING_DELAY_S``; uncover them at once."""
        if self._pending is not None:
            self._pending.stop()
            self._pending = None
        if loading:
            self._pending = self.set_timer(LOADING_DELAY_S, self._cover_if_still_loading)
        else:
            super().set_loading(False)

    def _cover_if_still_loading(self) -> None:
        self._pending = None
        if self.loading:
            super().set_loading(True)
