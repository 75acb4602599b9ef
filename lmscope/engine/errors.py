"""Errors caused by what the user asked for. The CLI prints their message as one line, exit 2."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: a setting, a model id, a device. The message is one line meant for the user."""


def exit_code(error: BaseException) -> int:
    """The exit code a run that ``error`` ended has: 2 for bad input, 1 for anything else (an
    error of lmscope's or of the model's), as the command line's one line says either."""
    return 2 if isinstance(error, UserError) else 1


def is_index(value) -> bool:
    """Whether ``value`` is a whole number an index can be (an int, a numpy integer), not a bool,
    a float or a string: those would reach ids or offsets before anything failed."""
    return not isinstance(value, bool) and hasattr(value, "__index__")


def first_line(error: BaseException) -> str:
    """The first line of an exception's text, or its class name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
