"""Engine test fixtures."""

from __future__ import annotations

import pytest

from lmscope.engine import models


@pytest.fixture(scope="module", params=["llama", "t5"])
def loaded(request, tiny_llama_dir, tiny_t5_dir):
    """Each tiny model in turn, loaded on the CPU in float32 (once per test module)."""
    folder = tiny_llama_dir if request.param == "llama" else tiny_t5_dir
    return models.load(str(folder), request.param, device="cpu", dtype="float32")
