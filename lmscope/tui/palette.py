"""Command palette (ctrl+p): lmscope's actions next to Textual's, from the same table as the keys."""

from __future__ import annotations

from functools import partial
from typing import Iterable

from textual.app import SystemCommand
from textual.screen import Screen

from lmscope.tui.keys import COMMANDS, keys_for


class PaletteCommands:
    """Mixin for the app: every command runs through ``run_action``, so ``check_action`` gates it
    exactly as it gates the key (a step from the palette is ignored while a step runs)."""

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's commands, then lmscope's with their keys in the help text."""
        yield from super().get_system_commands(screen)
        for command in COMMANDS:
            keys = keys_for(command.action)
            help_text = f"{command.help} ({keys})" if keys else command.help
            yield SystemCommand(command.title, help_text, partial(self.run_action, command.action))
