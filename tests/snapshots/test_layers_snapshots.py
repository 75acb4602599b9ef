"""Snapshots of the Layers tab (logit lens of the selected step) on both families, FakeEngine records."""

from __future__ import annotations

from functools import partial

import pytest

from test_snapshots import drive, recorded_app


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_layers_view(snap_compare, family):
    keys = ("n",) * 5 + ("s", "right_square_bracket", "enter")
    assert snap_compare(recorded_app(family, 8), terminal_size=(120, 40), run_before=partial(drive, keys=keys))
