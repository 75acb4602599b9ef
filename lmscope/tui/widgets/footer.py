"""Footer: Textual's Footer, greying keys in place when only their enabled state changed.

Every step flips ``busy`` twice (step greyed, then enabled again), and Textual's Footer answers
each bindings change by removing and re-mounting all its keys: 50-80 ms of event-loop time on
the 2-core reference machine, a visible stall (benchmarks/bench_tui.py). When the same actions
are shown, this footer only toggles the ``-disabled`` class of the keys whose state changed.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class DebuggerFooter(Footer):
    """A Footer that updates enabled/disabled keys without recomposing."""

    def bindings_changed(self, screen: Screen) -> None:
        """Toggle the keys in place when possible, else recompose as Textual does."""
        if not self._grey_in_place(screen):
            super().bindings_changed(screen)

    def _grey_in_place(self, screen: Screen) -> bool:
        """True if the shown keys are the same actions as before and were updated in place."""
        if not self.is_attached or screen is not self.screen:
            return False
        keys = [key for key in self.query(FooterKey) if not key.has_class("-command-palette")]
        enabled: dict[str, bool] = {}
        for _namespace, binding, is_enabled, _tooltip in screen.active_bindings.values():
            if binding.show:
                enabled.setdefault(binding.action, is_enabled)  # the Footer shows the first binding
        if not keys or {key.action for key in keys} != set(enabled):
            return False
        for key in keys:
            disabled = not enabled[key.action]
            if disabled != key._disabled:
                key._disabled = disabled  # FooterKey ignores clicks on itself when disabled
                key.set_class(disabled, "-disabled")
        return True
