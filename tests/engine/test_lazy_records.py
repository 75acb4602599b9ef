"""Records whose presenting objects are made when first read (``records.LazyTuple``): a waiting
record's stages, and every step's tensors and cache entries. Nothing is made before a reader
asks, and what is made then is what the step saw, however many steps came after it."""

from __future__ import annotations

import copy
import pickle

import pytest

from lmscope.engine import cache_stats as cache_stats_module, processors, tensors as tensors_module
from lmscope.engine.records import LazyTuple
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

PROMPT = "the quick brown fox"
SETTINGS = GenerationSettings(max_new_tokens=6, min_new_tokens=6)


def counting(make):
    calls = []

    def counted():
        calls.append(1)
        return make()
    return counted, calls


def test_a_lazy_tuple_makes_its_items_once_when_first_read():
    make, calls = counting(lambda: [3, 1, 2])
    lazy = LazyTuple(make)
    assert calls == []
    assert len(lazy) == 3 and calls == [1]
    assert lazy[0] == 3 and lazy[-1] == 2 and lazy[1:] == (1, 2) and list(lazy) == [3, 1, 2]
    assert lazy == (3, 1, 2) and (3, 1, 2) == lazy and lazy != (3, 1) and lazy == LazyTuple(lambda: (3, 1, 2))
    assert lazy + (4,) == (3, 1, 2, 4) and (0,) + lazy == (0, 3, 1, 2) and 1 in lazy and bool(lazy)
    assert hash(lazy) == hash((3, 1, 2)) and repr(lazy) == "(3, 1, 2)"
    assert pickle.loads(pickle.dumps(lazy)) == (3, 1, 2) and type(copy.copy(lazy)) is tuple
    assert calls == [1]
    assert not LazyTuple(tuple)


def continue_records(loaded, started=lambda: None) -> tuple[Stepper, list]:
    """Steps as a continue makes them, then the hand-over: the records made there (``started()``
    runs after ``start()``, which makes the prompt's record, before the first step)."""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    started()
    while not stepper.finished:
        stepper.step(rows_later=True, record_later=True)
    return stepper, list(stepper.complete_waiting())


def test_a_hand_over_makes_no_stage_cache_entry_or_tensor_info_until_read(loaded, monkeypatch):
    made = {"stages": [], "cache": [], "tensors": []}
    stages, entries = processors._stages, cache_stats_module._entries
    monkeypatch.setattr(processors, "_stages", lambda *args: made["stages"].append(1) or stages(*args))
    monkeypatch.setattr(cache_stats_module, "_entries", lambda *args: made["cache"].append(1) or entries(*args))
    info = tensors_module.TensorInfo
    monkeypatch.setattr(tensors_module, "TensorInfo", lambda **fields: made["tensors"].append(1) or info(**fields))
    _, records = continue_records(loaded, started=lambda: [made_so_far.clear() for made_so_far in made.values()])
    assert len(records) == SETTINGS.max_new_tokens
    for record in records:  # every record holds its numbers: the chosen token's are read at once
        assert 0.0 < record.chosen_prob <= 1.0 and record.raw_rank >= 1
    assert made == {"stages": [], "cache": [], "tensors": []}
    third = records[2]
    assert third.stages[-1].top[0].token_id == third.token_id  # greedy: the final stage's best
    assert third.cache.total_bytes > 0
    assert third.tensors[-1].name == "logits"
    assert made["stages"] == [1] and made["cache"] == [1] and len(made["tensors"]) == len(third.tensors)
    assert records[2].stages[0].name == "logits" and made["stages"] == [1]  # made once, kept


def test_cache_entries_read_late_are_the_shapes_the_step_saw(loaded):
    """Read after the last step, each record still shows its own step's keys: the shapes were
    read in the step, not when the entries were made."""
    stepper, records = continue_records(loaded)
    prompt_len = len(stepper.tokenizer(PROMPT).input_ids)
    for record in records:
        self_positions = {entry.key_shape[2] for entry in record.cache.layers if entry.kind == "self"}
        # decoder-only: the prompt's keys, then one a decode step; T5: its decoder's own keys.
        expected = prompt_len + record.step if loaded.family == "llama" else record.step + 1
        assert self_positions == {expected}, record.step


@pytest.mark.parametrize("in_the_step", [True, False])
def test_the_final_probability_needs_no_stage(loaded, in_the_step):
    """The token strip colours every token by ``final_prob``: it must not make a waiting record's stages."""
    if in_the_step:
        stepper = Stepper(loaded, PROMPT, SETTINGS)
        stepper.start()
        records = [stepper.step() for _ in range(3)]
    else:
        records = continue_records(loaded)[1]
    for record in records:
        held = record.stages._held if isinstance(record.stages, LazyTuple) else None
        assert record.final_prob == record.chosen_prob
        assert held is None or type(record.stages._held) is type(held)  # not made by final_prob
        chosen = record.chosen
        assert chosen is not None and chosen.prob == pytest.approx(record.final_prob, rel=1e-5)


def reachable_tensors(value, depth: int = 8, seen=None) -> list:
    """torch tensors reachable from ``value`` through closures, containers and fields (not
    through numpy arrays, whose memory is on the host, nor bound methods: the token decoder)."""
    import dataclasses
    import types

    import numpy as np
    import torch

    seen = set() if seen is None else seen
    if depth < 0 or id(value) in seen or isinstance(value, (str, bytes, int, float, np.ndarray, types.MethodType)):
        return []
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, types.FunctionType):
        children = [cell.cell_contents for cell in value.__closure__ or ()]
    elif isinstance(value, LazyTuple):
        children = [value._held]
    elif isinstance(value, (tuple, list, set)):
        children = list(value)
    elif isinstance(value, dict):
        children = list(value.values())
    elif dataclasses.is_dataclass(value):
        children = [getattr(value, field.name) for field in dataclasses.fields(value)]
    elif hasattr(value, "__slots__"):
        children = [getattr(value, name, None) for name in value.__slots__]
    else:
        children = list(getattr(value, "__dict__", {}).values())
    return [tensor for child in children for tensor in reachable_tensors(child, depth - 1, seen)]


def test_an_unread_record_holds_no_tensor(loaded, monkeypatch):
    """What a record keeps until it is read is on the host: on a GPU a tensor kept there would
    hold device memory for every record of the history (the device path, run on the CPU)."""
    from lmscope.engine.host_copy import HostCopy

    monkeypatch.setattr(HostCopy, "join_on_host", True)
    _, records = continue_records(loaded)
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    records.append(stepper.step())  # made in the step
    for record in records:
        for name in ("stages", "tensors", "cache"):
            assert reachable_tensors(getattr(record, name)) == [], (record.step, name)
