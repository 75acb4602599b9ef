"""Regressions of the debugger's operations, found by seeded random sequences of them and minimised."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

from test_fidelity import user_generate_kwargs  # tests/engine is on sys.path
from test_lens import lens_numbers

PROMPT = "the quick brown fox"
SAMPLED = GenerationSettings(max_new_tokens=10, do_sample=True, temperature=1.3, top_k=40, top_p=0.95,
                             repetition_penalty=1.2, seed=5)
GREEDY_SHORT = GenerationSettings(max_new_tokens=4)


class Impose(LogitsProcessor):
    """generate()'s own loop with ``forced`` ({step: id}) imposed (test_control's ImposeAt, at any steps)."""

    def __init__(self, start_len: int, forced: dict[int, int]):
        self.forced = {start_len + step: token for step, token in forced.items()}

    def __call__(self, input_ids, scores):
        token = self.forced.get(input_ids.shape[1])
        if token is None:
            return scores
        imposed = torch.full_like(scores, float("-inf"))
        imposed[:, token] = 0.0
        return imposed


def generate_imposing(loaded, settings: GenerationSettings, forced: dict[int, int]) -> list[int]:
    """generate()'s tokens from the prompt with ``forced`` ({step: id}) imposed, seeded as the
    session is. The session's generator is left as it was: it samples from it next."""
    ids = torch.tensor([loaded.tokenizer(PROMPT).input_ids])
    start_len = 1 if loaded.family == "t5" else ids.shape[1]  # T5's decoder ids begin with its start
    with torch.random.fork_rng(devices=[]):
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        out = loaded.model.generate(ids, logits_processor=LogitsProcessorList([Impose(start_len, forced)]),
                                    **user_generate_kwargs(settings, loaded.tokenizer))
    return out[0, start_len:].tolist()


def test_a_resumed_sampled_branch_draws_on_where_it_left_off(loaded):
    """``n n n``, ``u`` on step 1, ``t`` and ``r`` on the branch set aside, ``n``: resuming forces
    the branch's tokens again, and a forced step drew nothing, so the generator stayed where it
    was before step 1: the next step drew what step 1 had drawn, not generate()'s step 3, and a
    rewind inside the resumed branch (``u`` on step 2, ``n``) gave another token than the
    branch's own (rewind's promise: ``n`` gives step k again). A forced step now draws as
    generate()'s loop with the token imposed draws, so the forced replay leaves the generator
    where the branch had it."""
    stepper = Stepper(loaded, PROMPT, SAMPLED)
    stepper.start()
    branch = [stepper.step().token_id for _ in range(3)]
    stepper.rewind(1)  # u on step 1: steps 1-2 are set aside
    stepper.rewind(1)  # t, r: back to where the branches part, then the branch's tokens forced
    for token_id in branch[1:]:
        stepper.step(force=token_id)
    expected = generate_imposing(loaded, SAMPLED, {})
    assert branch == expected[:3]
    assert stepper.step().token_id == expected[3]
    stepper.rewind(2)
    assert [stepper.step().token_id for _ in range(2)] == expected[2:4]


def test_a_forced_token_in_a_sampled_session_goes_on_as_generate_imposing_it(loaded):
    """test_control's oracle for force (generate() with a processor imposing the token there),
    sampling: the steps after the forced one draw what generate() draws."""
    stepper = Stepper(loaded, PROMPT, SAMPLED)
    stepper.start()
    free = [stepper.step() for _ in range(4)]
    forced_id = free[2].stages[0].top[3].token_id
    stepper.rewind(2)
    tokens = [record.token_id for record in free[:2]] + [stepper.step(force=forced_id).token_id]
    while not stepper.finished:
        tokens.append(stepper.step().token_id)
    assert tokens == generate_imposing(loaded, SAMPLED, {2: forced_id})


def test_step_0_made_again_keeps_the_prefills_layers(loaded):
    """``c`` (a continue: its steps' layers wait for a replay), ``enter`` forcing a candidate at
    step 0, then the Layers pane on step 0: a decoder-only model chooses step 0 again from the
    prefill, without a forward pass, and the step took the newest layer capture the Stepper had
    made (a replay marker after a continue, another step's capture after ``n``) as its own. The
    lens then replayed step 0 as a decode step, feeding the prompt's last token over a cache that
    already held it, or showed another step's layers."""
    stepper = Stepper(loaded, PROMPT, GREEDY_SHORT)
    stepper.start()
    first = stepper.step()
    want = stepper.lens(0, top=5), [stepper.layer_tensors(0, layer) for layer in range(stepper.info.layers)]
    for calls in ({"rows_later": True, "record_later": True}, {}):  # c, and n with the Layers tab showing
        while not stepper.finished:
            stepper.step(**calls)
        stepper.complete_waiting()
        stepper.rewind(0)
        assert stepper.step(force=first.token_id).token_id == first.token_id
        got = stepper.lens(0, top=5), [stepper.layer_tensors(0, layer) for layer in range(stepper.info.layers)]
        assert [lens_numbers(entry) for entry in got[0]] == [lens_numbers(entry) for entry in want[0]]
        assert [[(t.name, t.shape, t.preview) for t in layer] for layer in got[1]] == \
            [[(t.name, t.shape, t.preview) for t in layer] for layer in want[1]]
