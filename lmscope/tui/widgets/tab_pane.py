"""A mixin for panes that live in a tab: they follow the View only while shown."""

from __future__ import annotations


class CatchUpWhenShown:
    """Apply a new ``current`` View now if visible; a hidden tab catches up when it is shown.

    Updating a hidden tab would cost a screen layout on every key. The pane defines
    ``show_view(view)``.
    """

    def watch_current(self, view) -> None:
        if self.is_on_screen:
            self.show_view(view)

    def on_show(self) -> None:
        self.show_view(self.current)
