"""``open_session`` loads as quietly as the command, and leaves the program's settings as they were."""

from __future__ import annotations

import logging

import pytest

from lmscope.engine.session import SessionOptions, open_session


@pytest.fixture
def loud(monkeypatch):
    """transformers' bars on and its verbosity at info, as a program may have them; put back after
    (the command's tests turn them off for the whole process)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars
    from transformers.utils import logging as hf_logging

    bars, hub_off, verbosity = hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled(), \
        hf_logging.get_verbosity()
    accelerate = logging.getLogger("accelerate").level
    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_info()
    logging.getLogger("accelerate").setLevel(logging.INFO)
    yield hf_logging
    (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()
    if hub_off:
        disable_progress_bars()
    hf_logging.set_verbosity(verbosity)
    logging.getLogger("accelerate").setLevel(accelerate)


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_open_session_prints_no_progress_bar_and_puts_the_settings_back(family, tiny_llama_dir, tiny_t5_dir, loud,
                                                                        capsys, tmp_path):
    """The "Loading weights" bar went to stderr from the Python API, where the command shows none;
    a device map that offloads to disk adds accelerate's note about the meta device."""
    folder = tiny_llama_dir if family == "llama" else tiny_t5_dir
    stepper = open_session(SessionOptions(family=family, prompt="the quick", model=str(folder), device_map="auto",
                                          max_memory="cpu=40KB", offload_folder=str(tmp_path / "offload")))
    stepper.start()
    assert stepper.step().token_id >= 0
    assert capsys.readouterr().err == ""
    assert loud.is_progress_bar_enabled() and loud.get_verbosity() == logging.INFO
    assert logging.getLogger("accelerate").level == logging.INFO
