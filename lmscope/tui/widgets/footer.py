"""Footer: Textual's Footer, greying keys in place when only their enabled state changed.

Every step flips ``busy`` twice (step disabled, then enabled again), and Textual's Footer answers
each bindings change by removing and re-mounting all its keys: 50-80 ms of event-loop time on
the 2-core reference machine, a visible stall (benchmarks/bench_tui.py). When the same actions
are shown, this footer only greys or un-greys the keys whose state changed, with the one style
Textual's ``-disabled`` class gives (``text-style: dim``) set inline: toggling the class restyled
each key through the whole stylesheet, 3.5-6 ms of the UI thread at every continue's start and
end, while the continue's first and last steps wait for it. And while an engine call runs, keys it
disables grey only once it has lasted :data:`GREY_AFTER_S` (a step never greys them).

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

GREY_AFTER_S = 0.3
"""While an engine call runs, the keys it disables grey only after this long, or at a continue's
first paced frame if that comes first (:meth:`DebuggerFooter.grey_waiting`; a frame of its own
mid-continue would cost the model as much as the greying): a step or a short continue has ended
by then, and greying then un-greying every key was most of the UI thread's
work for a step (what the call disables is refused at once, whatever the footer shows:
``check_action``; the status bar says ``running`` at once). Measured on the 2-core reference
machine, the demo T5, medians of 12 alternated runs, two runs: a step's ``n`` cost the UI thread
34.4 and 30.6 ms before, 24.4 and 23.4 ms after (the frame at the key 8.4/7.9 -> 1.7/1.6 ms); at
a 64-token continue's ``c`` that frame fell from 9.8/8.9 to 6.3/6.2 ms, while the continue's
whole UI time moved within the runs' noise (43.2 -> 39.7 and 38.1 -> 44.8 ms)."""


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
    _grey_timer = None
    """While keys wait to be greyed (:data:`GREY_AFTER_S`)."""

    def bindings_changed(self, screen: Screen) -> None:
        """Toggle the keys in place when possible, else recompose (as Textual's Footer does), once.
        Keys that are enabled change at once; while an engine call runs (the app's ``busy``),
        keys that grey wait :data:`GREY_AFTER_S`."""
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        self._update(screen, grey=False)

    def _update(self, screen: Screen, grey: bool) -> None:
        """Show the bindings as they are now (``grey``, or no engine call running: every key)."""
        grey = grey or not getattr(screen.app, "busy", False)
        if self._grey_timer is not None:
            self._grey_timer.stop()
            self._grey_timer = None
        if self._recompose_due or not self.is_attached or screen is not self.screen:
            return
        keys = self._keys()
        enabled = self._shown_enabled(screen, keys)
        if enabled is None:
            self._recompose_due = True
            self.call_after_refresh(self._recompose_once)
        elif self._set_keys(keys, enabled, grey):
            self._grey_timer = self.set_timer(GREY_AFTER_S, lambda: self._update(screen, grey=True))

    def grey_waiting(self) -> None:
        """Grey the waiting keys now: a frame is being made anyway (a continue's paced frame), and
        the timer's own would be one more."""
        if self._grey_timer is not None:
            self._update(self.screen, grey=True)

    async def _recompose_once(self) -> None:
        self._recompose_due = False
        await self.recompose()

    @staticmethod
    def _shown_enabled(screen: Screen, keys: list[FooterKey]) -> dict[str, bool] | None:
        """Whether each shown action is enabled, if the shown actions are ``keys``' (else None)."""
        enabled: dict[str, bool] = {}
        for _namespace, binding, is_enabled, _tooltip in screen.active_bindings.values():
            if binding.show:
                enabled.setdefault(binding.action, is_enabled)  # the Footer shows the first binding
        actions = {key.action for key in keys}
        return enabled if actions and actions == set(enabled) else None

    def _keys(self) -> list[FooterKey]:
        return [key for key in self.query(FooterKey) if not key.has_class("-command-palette")]

    @staticmethod
    def _set_keys(keys: list[FooterKey], enabled: dict[str, bool], grey: bool) -> bool:
        """Grey or un-grey each of ``keys`` whose state changed (``grey`` False: only un-grey);
        True if a key waits to be greyed."""
        waiting = False
        for key in keys:
            disabled = not enabled[key.action]
            if disabled == key._disabled:
                continue
            if disabled and not grey:
                waiting = True
                continue
            key._disabled = disabled  # FooterKey ignores clicks on itself when disabled
            key.styles.text_style = "dim" if disabled else "none"  # overrides a composed key's class
        return waiting
