"""Footer: Textual's Footer, greying keys in place when only their enabled state changed.

Every step flips ``busy`` twice (step greyed, then enabled again), and Textual's Footer answers
each bindings change by removing and re-mounting all its keys: 50-80 ms of event-loop time on
the 2-core reference machine, a visible stall (benchmarks/bench_tui.py). When the same actions
are shown, this footer only greys or un-greys the keys whose state changed, with the one style
Textual's ``-disabled`` class gives (``text-style: dim``) set inline: toggling the class restyled
each key through the whole stylesheet, 3.5-6 ms of the UI thread at every continue's start and
end, while the continue's first and last steps wait for it.

Start-up: Textual's Footer composes no keys until the bindings first change, then recomposes
once for each change; the debugger's bindings changed four times before its first frame (the
screen mounts, focus settles, ``busy`` is set, the model loads), and each recompose cost 30-45
ms on that machine. The main screen's shown keys do not depend on focus, so this footer composes
them at once (they are in the first frame) and later changes grey them in place; when the shown
actions do change, it schedules one recompose at a time, which shows the bindings as they are
when it runs.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class DebuggerFooter(Footer):
    """A Footer that updates enabled/disabled keys without recomposing."""

    def compose(self) -> ComposeResult:
        """Textual's keys, from the first compose, each told at once whether the footer is compact.

        A FooterKey starts compact and is bound to the footer's ``compact`` only once mounted,
        so each key restyled itself twice on mount (compact, then not): ~2 ms a key, 60 ms for
        the footer on the 2-core reference machine. The command palette's key is not bound
        (Textual leaves it compact), so it keeps its default.
        """
        self._bindings_ready = True
        for widget in super().compose():
            if isinstance(widget, FooterKey) and not widget.has_class("-command-palette"):
                widget.set_reactive(FooterKey.compact, self.compact)
            yield widget

    _recompose_due = False
    """True while a recompose is scheduled."""

    def bindings_changed(self, screen: Screen) -> None:
        """Toggle the keys in place when possible, else recompose (as Textual's Footer does), once."""
        self._bindings_ready = True
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen:
            return
        if not self._recompose_due and not self._grey_in_place(screen):
            self._recompose_due = True
            self.call_after_refresh(self._recompose_once)

    async def _recompose_once(self) -> None:
        self._recompose_due = False
        await self.recompose()

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
                key.styles.text_style = "dim" if disabled else "none"  # overrides a composed key's class
        return True
