"""One device-to-host copy per step: HostCopy itself, and a count of the Stepper's host reads.

No GPU here, so the count is a CPU stand-in: a ``TorchFunctionMode`` sees every tensor method
that brings values to the host (``item``, ``tolist``, ``numpy``, ``bool()``, ``int()``,
``.cpu()``, ``.to("cpu")``) and where it was called from. On a GPU each of them waits for the
device; the Stepper's own code may make exactly one, in ``engine/host_copy.py``. The device path
is taken on the CPU with ``HostCopy.join_on_host``; without it a CPU step copies nothing.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

import lmscope
from lmscope.engine import models
from lmscope.engine.host_copy import HostCopy
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

HOST_READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__"}
LMSCOPE = str(Path(lmscope.__file__).parent)


class HostReads(TorchFunctionMode):
    """Records ``(method, file:line)`` for each host read whose caller is lmscope's own code."""

    def __init__(self):
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        to_host = name == "to" and "cpu" in [a for a in (*args[1:], *kwargs.values()) if isinstance(a, str)]
        if name in HOST_READS or to_host:
            caller = [f for f in traceback.extract_stack()[:-1] if "torch/" not in f.filename][-1]
            if caller.filename.startswith(LMSCOPE):
                self.reads.append((name, f"{Path(caller.filename).name}:{caller.lineno}"))
        return func(*args, **kwargs)


@pytest.mark.parametrize("join_on_host", [True, False], ids=["device path", "host path"])
def test_host_copy_returns_every_part_with_its_dtype_and_shape(join_on_host, monkeypatch):
    monkeypatch.setattr(HostCopy, "join_on_host", join_on_host)
    host_copy = HostCopy()
    seen = []
    parts = {
        "flag": torch.tensor([True]),
        "ids": torch.tensor([[3, 1, 4]]),
        "rows": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)[:, 1:],  # not contiguous
        "numbers": torch.tensor([0.25, 7.0], dtype=torch.float64),
        "half": torch.tensor([1.5, -2.0], dtype=torch.float16),
    }
    handles = {name: host_copy.add(t, seen.append if name == "rows" else None) for name, t in parts.items()}
    host_copy.copy()
    assert host_copy.copies == (1 if join_on_host else 0)
    for name, tensor in parts.items():
        array = handles[name].array
        assert array.dtype == tensor.numpy().dtype and array.shape == tuple(tensor.shape), name
        np.testing.assert_array_equal(array, tensor.numpy())
    assert len(seen) == 1 and seen[0] is handles["rows"].array


def test_host_copy_without_parts_copies_nothing():
    host_copy = HostCopy()
    host_copy.copy()
    assert host_copy.copies == 0


@pytest.mark.parametrize("join_on_host", [True, False], ids=["device path", "host path"])
@pytest.mark.parametrize("family", ["llama", "t5"])
@pytest.mark.parametrize("layer_capture", ["off", "full"])
def test_a_decode_step_reads_the_host_once(family, layer_capture, join_on_host, tiny_llama_dir, tiny_t5_dir,
                                          monkeypatch):
    monkeypatch.setattr(HostCopy, "join_on_host", join_on_host)
    folder = tiny_llama_dir if family == "llama" else tiny_t5_dir
    loaded = models.load(str(folder), family, device="cpu", dtype="float32")
    settings = GenerationSettings(max_new_tokens=8, min_new_tokens=8, do_sample=True, top_k=20, top_p=0.9,
                                  repetition_penalty=1.3, seed=0)
    stepper = Stepper(loaded, "the quick brown fox", settings, layer_capture=layer_capture)
    stepper.start()
    stepper.step()  # decoder-only: step 0 chooses from the prefill
    copies = []
    original = HostCopy.copy
    HostCopy.copy = lambda self: (copies.append(self), original(self))[1]
    try:
        with HostReads() as counter:
            records = [stepper.step() for _ in range(5)]
    finally:
        HostCopy.copy = original
    assert [r.step for r in records] == [1, 2, 3, 4, 5] and records[-1].attention is not None
    assert [c.copies for c in copies] == [1 if join_on_host else 0] * 5, "one copy per step on a device"
    elsewhere = [read for read in counter.reads if not read[1].startswith("host_copy.py")]
    assert elsewhere == [], f"host reads outside the step's one copy: {elsewhere}"
    assert sum(name == "cpu" for name, _ in counter.reads) == (5 if join_on_host else 0)


@pytest.mark.parametrize("record_later", [False, True], ids=["records in the step", "records waiting"])
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_rows_made_later_add_one_copy_per_kind_for_all_the_waiting_steps(family, record_later, tiny_llama_dir,
                                                                         tiny_t5_dir, monkeypatch):
    """A continue's steps (``rows_later``) still copy once each; completing their attention
    rows (self, T5's cross) and (``record_later``) records copies once for all of them together.
    (Their layer captures are made when asked, by a replay: ``test_layer_replay.py``.)"""
    monkeypatch.setattr(HostCopy, "join_on_host", True)
    folder = tiny_llama_dir if family == "llama" else tiny_t5_dir
    loaded = models.load(str(folder), family, device="cpu", dtype="float32")
    stepper = Stepper(loaded, "the quick brown fox", GenerationSettings(max_new_tokens=8, min_new_tokens=8))
    stepper.start()
    stepper.step()
    copies = []
    original = HostCopy.copy
    HostCopy.copy = lambda self: (copies.append(self), original(self))[1]
    try:
        with HostReads() as counter:
            records = [stepper.step(rows_later=True, record_later=record_later) for _ in range(5)]
            assert stepper._deferred.pending == 5 and len(copies) == 5
            made = stepper.complete_waiting()
        if record_later:
            assert records == [None] * 5 and [r.step for r in made] == [1, 2, 3, 4, 5]
            records = list(made)
    finally:
        HostCopy.copy = original
    assert records[-1].attention.probs.sum() > 0
    assert stepper._captured(records[-1].step)[0].previews is not None
    assert [c.copies for c in copies] == [1] * 6, "one copy a step, and one for completing them all"
    assert all(read[1].startswith("host_copy.py") for read in counter.reads), counter.reads
    assert sum(name == "cpu" for name, _ in counter.reads) == 6


def device_path_session(folder, family: str, dtype: str) -> list:
    """What a session shows across the engine's calls (steps, a continue's waiting records, a
    lens, a layer's tensors, a rewind and a forced id), as plain values to compare."""
    loaded = models.load(str(folder), family, device="cpu", dtype=dtype)
    settings = GenerationSettings(max_new_tokens=12, do_sample=True, top_k=20, seed=0)
    stepper = Stepper(loaded, "the quick brown fox", settings)
    stepper.start()
    records = [stepper.step() for _ in range(3)]
    stepper.step(rows_later=True)
    stepper.step(record_later=True)
    records += stepper.complete_waiting()
    lens = stepper.lens(3)
    tensors = stepper.layer_tensors(3, 0)
    stepper.rewind(2)
    records += [stepper.step(force=5), stepper.step()]
    shown = [(r.step, r.token_id, r.chosen_by, [[(c.token_id, c.score) for c in s.top] for s in r.stages],
              r.attention.probs.tolist()) for r in records]
    return [shown, [(row.layer, [c.token_id for c in row.top]) for row in lens],
            [(t.name, t.shape, t.preview) for t in tensors]]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_the_device_path_shows_what_the_host_path_shows_in_half_precision(family, dtype, tiny_llama_dir,
                                                                        tiny_t5_dir, monkeypatch):
    """A GPU session in bfloat16 or float16 joins parts of several dtypes into its one copy
    (float32 rows and stages, int64 ids, bool flags, the model's dtype where a tensor keeps it):
    each comes back with its own values, as the CPU reads them in place."""
    folder = tiny_llama_dir if family == "llama" else tiny_t5_dir
    on_host = device_path_session(folder, family, dtype)
    monkeypatch.setattr(HostCopy, "join_on_host", True)
    assert device_path_session(folder, family, dtype) == on_host
