"""transformers, accelerate and huggingface_hub kept quiet while lmscope loads a model.

What mattered in their progress bars ("Loading weights") and warnings became lmscope's own
checks and lines, so the command turns them off for the whole run (``cli``). ``open_session``,
which programs call too, turns them off only while it loads, and puts back what the program had.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

LOGGERS = ("accelerate", "huggingface_hub")
"""Loggers of libraries that speak outside transformers' verbosity: accelerate says offloaded
weights sit on the meta device (the status bar shows the map instead), huggingface_hub logs each
retry of a hub it cannot reach (a dozen lines before the one that says the model cannot be had)."""


def quiet_libraries() -> None:
    """From now on (the command's whole run): transformers' (and huggingface_hub's) progress bars
    off, transformers' verbosity at error, :data:`LOGGERS` at ERROR."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stdout is the data; stderr keeps only lmscope's lines
    hf_logging.set_verbosity_error()
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def quiet_loading():
    """Inside: as :func:`quiet_libraries` leaves them. After: each as it was before, so a program
    that opens a session keeps the bars and warnings it had for its own loads."""
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    bars, hub_bars = hf_logging.is_progress_bar_enabled(), not are_progress_bars_disabled()
    verbosity = hf_logging.get_verbosity()
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    quiet_libraries()
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        hf_logging.set_verbosity(verbosity)
        _restore_bars(bars, hub_bars)


def _restore_bars(bars: bool, hub_bars: bool) -> None:
    """transformers' switch turns huggingface_hub's bars on and off with its own: put back each."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    if bars:
        hf_logging.enable_progress_bar()
    if hub_bars == are_progress_bars_disabled():
        (enable_progress_bars if hub_bars else disable_progress_bars)()
