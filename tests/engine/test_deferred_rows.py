"""Attention rows made later (``Stepper.step(rows_later=True)``, as a continue steps) equal the
rows made in the step, through rewinds, forced tokens and a step whose rows cannot wait."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmscope.engine import attention, deferred_rows, models
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

PROMPT = "the quick brown fox"
SETTINGS = GenerationSettings(max_new_tokens=14, min_new_tokens=14)


def immediate_steps(loaded, forced: dict[int, int] | None = None):
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    return [stepper.step(force=(forced or {}).get(index)) for index in range(SETTINGS.max_new_tokens)]


def assert_same_rows(expected, got):
    assert [step.token_id for step in got] == [step.token_id for step in expected]
    for want, have in zip(expected, got):
        for kind in ("attention", "cross_attention"):
            want_rows, have_rows = getattr(want, kind), getattr(have, kind)
            if want_rows is None:
                assert have_rows is None
                continue
            assert have_rows.probs.shape == want_rows.probs.shape
            assert have_rows.query_start == want_rows.query_start
            np.testing.assert_allclose(have_rows.probs, want_rows.probs, atol=1e-6)


def test_rows_made_later_equal_rows_made_in_the_step(loaded):
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    assert stepper._can_defer
    steps = []
    for index in range(SETTINGS.max_new_tokens):
        steps.append(stepper.step(rows_later=True))
        if index in (2, 3, 9):  # batches of 3, 1 and 6 steps, then the last 4
            stepper.complete_waiting()
    assert stepper._deferred.pending == 4
    stepper.complete_waiting()
    assert stepper._deferred.pending == 0
    assert_same_rows(immediate_steps(loaded), steps)


def test_a_rewind_or_a_forced_token_completes_the_waiting_rows_first(loaded):
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    first = [stepper.step(rows_later=True) for _ in range(6)]
    stepper.rewind(4)  # the crop must not change what steps 0-5 saw
    assert stepper._deferred.pending == 0
    again = [stepper.step(rows_later=True) for _ in range(2)]
    forced_id = again[-1].token_id
    forced = stepper.step(force=forced_id)  # not rows_later: the two waiting steps complete first
    rest = [stepper.step(rows_later=True) for _ in range(SETTINGS.max_new_tokens - 7)]
    stepper.complete_waiting()
    expected = immediate_steps(loaded, forced={6: forced_id})
    assert_same_rows(expected[:6], first)
    assert_same_rows(expected[4:], again + [forced] + rest)


def test_a_step_whose_rows_cannot_wait_computes_them_in_the_step(loaded, monkeypatch):
    """A call with an attention mask cannot wait; its step's waiting calls are taken back and
    computed at once, and the steps before it are completed before the next step."""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    defers, calls = attention.AttentionRecorder.defers, []

    def defers_but_one(self, query, attention_mask):
        calls.append(None)
        if stepper._state.generated == 5 and len(calls) % 2 == 0:  # every other call of step 5
            return False
        return defers(self, query, attention_mask)

    monkeypatch.setattr(attention.AttentionRecorder, "defers", defers_but_one)
    steps = [stepper.step(rows_later=True) for _ in range(8)]
    stepper.complete_waiting()
    monkeypatch.undo()
    assert_same_rows(immediate_steps(loaded)[:8], steps)


def test_steps_wait_only_up_to_their_byte_budget(loaded, monkeypatch):
    """The waiting rows and records together stay under ``MAX_WAITING_BYTES``."""
    from lmscope.engine import stepper as stepper_module

    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    stepper.step(rows_later=True)
    stepper.step(rows_later=True)
    assert stepper._deferred.waiting_bytes > 0 and stepper._deferred.pending > 0
    per_step = stepper._waiting_bytes // stepper._deferred.pending
    budget = 3 * per_step  # later steps have more keys: fewer than three fit after the first two
    monkeypatch.setattr(stepper_module, "MAX_WAITING_BYTES", budget)
    pending = []
    for _ in range(8):
        waiting, waiting_bytes = stepper._deferred.pending, stepper._waiting_bytes
        stepper.step(rows_later=True)
        pending.append(stepper._deferred.pending)
        # a step begins by completing the waiting ones once they reach the budget
        assert pending[-1] == (1 if waiting_bytes >= budget else waiting + 1)
    assert max(pending) == 3 and pending.count(1) >= 2
    stepper.complete_waiting()


def test_a_sliding_window_model_defers_and_its_window_comes_as_a_mask(tiny_llama_dir):
    """A sliding-window model's session cache keeps every key (``cache_stats.full_cache``), so its
    rows may wait like any other's: where the window bites, the layer's call has a mask and its
    rows are made in the step; before, they wait. Both equal the rows made in every step."""
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig

    config = MistralConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=4)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attention.ATTENTION_NAME).eval()
    tiny = models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")
    mistral = models.LoadedModel(model, tiny.tokenizer, "llama", "mistral")
    stepper = Stepper(mistral, PROMPT, SETTINGS)
    stepper.start()
    assert stepper._can_defer
    waited = [stepper.step(rows_later=True) for _ in range(SETTINGS.max_new_tokens)]
    stepper.complete_waiting()
    assert_same_rows(immediate_steps(mistral), waited)
    last = waited[-1].attention.probs
    assert not last[..., : last.shape[-1] - 4].any() and last[..., -4:].all(), "the window of 4 keys, zeros before"


def test_waiting_records_get_their_rows_from_one_slot_a_kind(loaded, monkeypatch):
    """Steps whose records wait (``record_later``) reserve no slot of their own: the hand-over
    reserves one for all of them, per kind, and writes it once; each record's rows are its part."""
    from lmscope.engine.row_store import RowStore

    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    stepper.step(record_later=True)  # Llama's step 0 is the prefill's rows: none wait
    stepper.complete_waiting()
    reserved, writes = [], []
    reserve, write_array = RowStore.reserve, RowStore.write_array
    monkeypatch.setattr(RowStore, "reserve", lambda self, shape: (reserved.append(shape), reserve(self, shape))[1])
    monkeypatch.setattr(RowStore, "write_array",
                        lambda self, *a, **k: (writes.append(a[1].shape), write_array(self, *a, **k))[1])
    for _ in range(5):
        assert stepper.step(record_later=True) is None
    assert reserved == [] and writes == []
    made = list(stepper.complete_waiting())
    kinds = 2 if loaded.family == "t5" else 1
    assert len(reserved) == kinds and len(writes) == kinds
    assert all(shape[2] == 5 for shape in reserved)  # [layer, head, steps, key_pos]
    assert_same_rows(immediate_steps(loaded)[1:6], made)


def test_steps_whose_records_wait_and_steps_whose_rows_wait_complete_together(loaded):
    """A batch mixing the two (rows_later, then record_later, without a hand-over between) gives
    each step its own slot, and the rows are the rows made in the step."""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    steps = [stepper.step(rows_later=True) for _ in range(3)]
    for _ in range(3):
        assert stepper.step(record_later=True) is None
    steps += stepper.complete_waiting()
    assert_same_rows(immediate_steps(loaded)[:6], steps)


def waiting_kinds(stepper):
    """``{kind: (layers, key_len, mask)}`` of the Stepper's waiting steps, as ``complete`` takes them."""
    deferred = stepper._deferred
    waiting = {}
    for kind, steps in deferred._steps.items():
        layers = sorted(layer for labelled_kind, layer in deferred._calls if labelled_kind == kind)
        key_len = steps[-1][1]
        causal = kind == "self" and len(steps) > 1
        mask = deferred_rows._causal(len(steps), key_len, "cpu") if causal else None
        waiting[kind] = (layers, key_len, mask)
    return waiting


@pytest.mark.parametrize("steps", [1, 5])
def test_all_layers_rows_at_once_equal_the_rows_layer_by_layer_bit_for_bit(loaded, steps):
    """``complete`` puts every layer's scores in one tensor, masked and softmaxed once; each
    row must be exactly what :func:`attention.kept_probs` makes for its layer alone (T5: with
    its position bias, both self- and cross-attention; one step unmasked, five causal)."""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    stepper.step()  # a decoder-only model's first step is the prefill's, which waits for nothing
    for _ in range(steps):
        stepper.step(rows_later=True, record_later=True)
    deferred = stepper._deferred
    kinds = waiting_kinds(stepper)
    assert set(kinds) == ({"self", "cross"} if loaded.family == "t5" else {"self"})
    for kind, (layers, key_len, mask) in kinds.items():
        fused = deferred._rows(kind, layers, key_len, mask)
        by_layer = torch.stack([deferred._layer_rows(kind, layer, key_len, mask)[0] for layer in layers])
        assert fused.shape == (len(layers), stepper.model.config.num_attention_heads if loaded.family == "llama"
                               else stepper.model.config.num_heads, steps, key_len)
        assert torch.equal(fused, by_layer)
    stepper.complete_waiting()


def test_a_bias_in_another_dtype_takes_the_rows_layer_by_layer(loaded, monkeypatch):
    """A bias wider than the scores would be summed in its own dtype by ``kept_probs``; added in
    place it would be rounded to the scores'. Such rows are made layer by layer."""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    stepper.step()
    stepper.step(rows_later=True, record_later=True)
    deferred = stepper._deferred
    layer_inputs = deferred._layer_inputs

    def wider_bias(kind, layer, key_len):
        queries, key, scaling, bias = layer_inputs(kind, layer, key_len)
        return queries, key, scaling, torch.zeros(1, queries.shape[1], queries.shape[2], key_len, dtype=torch.float64)

    monkeypatch.setattr(deferred, "_layer_inputs", wider_bias)
    made_alone = []
    layer_rows = deferred._layer_rows
    monkeypatch.setattr(deferred, "_layer_rows", lambda *args: made_alone.append(args) or layer_rows(*args))
    layers, key_len, mask = waiting_kinds(stepper)["self"]
    rows = deferred._rows("self", layers, key_len, mask)
    assert [args[1] for args in made_alone] == layers
    assert rows.dtype == torch.float32 and rows.shape[0] == len(layers)


def test_a_step_completed_alone_makes_its_products_in_the_step_with_the_same_rows(loaded, monkeypatch):
    """``scores_in_step`` (the ``n`` key): each layer's ``q @ k.T`` is made right after SDPA,
    and ``complete`` only softmaxes them: the same rows, bit for bit, as products made there.
    A step that is not completed alone leaves them unused: they are made again with the other
    waiting steps' products."""
    made, products = [], []
    scaled = deferred_rows.scaled_scores
    monkeypatch.setattr(deferred_rows, "scaled_scores",
                        lambda *args, **kwargs: made.append(args) or scaled(*args, **kwargs))
    add_products = deferred_rows.DeferredRows.add_products
    monkeypatch.setattr(deferred_rows.DeferredRows, "add_products",
                        lambda self, label, *args: products.append(label) or add_products(self, label, *args))
    alone, later = Stepper(loaded, PROMPT, SETTINGS), Stepper(loaded, PROMPT, SETTINGS)
    for stepper in (alone, later):
        stepper.start()
        stepper.step()
    config = alone.model.config
    calls = 2 * config.num_decoder_layers if loaded.family == "t5" else config.num_hidden_layers  # T5: self and cross
    alone_steps, later_steps = [], []
    for _ in range(3):
        made.clear(), products.clear()
        alone_steps.append(alone.step(rows_later=True, scores_in_step=True))
        assert len(products) == len(made) == calls  # one product per attention call, in the step
        alone.complete_waiting()
        assert len(made) == calls  # and none made again
        later_steps.append(later.step(rows_later=True))
        later.complete_waiting()
    assert [step.token_id for step in alone_steps] == [step.token_id for step in later_steps]
    for have, want in zip(alone_steps, later_steps):
        for kind in ("attention", "cross_attention"):
            if getattr(want, kind) is not None:
                assert np.array_equal(getattr(have, kind).probs, getattr(want, kind).probs)
    made.clear()
    for _ in range(2):  # two waiting steps: the products made in the first are not used
        alone.step(rows_later=True, scores_in_step=True)
    made.clear()
    alone.complete_waiting()
    assert len(made) == calls


def test_a_layer_on_another_device_or_a_batch_makes_no_product_in_the_step():
    """Products made in the step share one tensor a kind, on the first layer's device; a layer a
    device map put elsewhere (here the ``meta`` device), or a batch of several sequences, makes
    none, and leaves the completion to make every product itself."""
    deferred = deferred_rows.DeferredRows()
    query, key = torch.randn(1, 4, 1, 8), torch.randn(1, 2, 5, 8)
    deferred.add_products(("self", 0), query, key, None, layers=2)
    deferred.add_products(("self", 1), query.to("meta"), key.to("meta"), None, layers=2)
    assert deferred._products["self"].layers == {0}
    deferred.add_products(("cross", 0), torch.randn(2, 4, 1, 8), torch.randn(2, 2, 5, 8), None, layers=1)
    assert deferred._products["cross"].layers == set()
