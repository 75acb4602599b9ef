"""Device-map and tensor-parallel flags: parsed and checked before any weights load."""

from __future__ import annotations

import pytest

from lmscope.engine.placement import Placement, PlacementError, parse_max_memory, placement_of
from lmscope.engine.session import SessionOptions


def options(**flags) -> SessionOptions:
    return SessionOptions(family="llama", prompt="x", **flags)


def test_max_memory_units_and_devices():
    assert parse_max_memory("cpu=20GB,cuda:0=10GiB, 1=512MB, disk=1.5TB") == {
        "cpu": 20 * 10**9, 0: 10 * 2**30, 1: 512 * 10**6, "disk": int(1.5 * 10**12)}
    assert parse_max_memory("cpu=4096B") == {"cpu": 4096}
    assert parse_max_memory("cpu=0GiB") == {"cpu": 0}  # nothing on the CPU: accelerate offloads to disk


@pytest.mark.parametrize("text, message", [
    ("cpu", "expected DEVICE=SIZE"),
    ("cpu=", "expected DEVICE=SIZE"),
    ("gpu=1GB", "unknown device 'gpu'"),
    ("cpu=1XB", "bad size '1XB'"),
    ("cpu=4096", "bad size '4096' in --max-memory: a number and its unit, e.g. cpu=8GiB"),
    ("cpu=0", "bad size '0'"),
    ("cpu=1GB,cpu=2GB", "names 'cpu' twice"),
])
def test_bad_max_memory(text, message):
    with pytest.raises(PlacementError, match=message):
        parse_max_memory(text)


@pytest.mark.parametrize("flags, message", [
    ({"device_map": "everywhere"}, "unknown --device-map 'everywhere'"),
    ({"device_map": "auto", "device": "cpu"}, "leave --device at auto"),
    ({"max_memory": "cpu=1GB"}, "need --device-map"),
    ({"offload_folder": "/tmp/x"}, "need --device-map"),
])
def test_bad_flag_combinations(flags, message):
    with pytest.raises(PlacementError, match=message):
        options(**flags).check()


def test_device_map_with_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(PlacementError, match="cannot be combined with tensor parallel"):
        placement_of(options(device_map="auto"))
    with pytest.raises(PlacementError, match="each rank takes its own device"):
        placement_of(options(device="cpu"))


def test_load_kwargs():
    placement = placement_of(options(device_map="balanced", max_memory="cpu=1MB", offload_folder="off"))
    assert placement.spread
    assert placement.load_kwargs() == {"device_map": "balanced", "max_memory": {"cpu": 10**6}, "offload_folder": "off"}
    assert not placement_of(options()).spread and placement_of(options()).load_kwargs() == {}


def test_heads_that_do_not_divide_say_which_numbers():
    class Config:
        num_attention_heads, num_key_value_heads = 9, 3

    Placement(ranks=3).check_heads(Config())
    with pytest.raises(PlacementError, match="over 2 ranks .* 9 query heads and 3 key-value heads"):
        Placement(ranks=2).check_heads(Config())
