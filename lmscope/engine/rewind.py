"""Taking a session back to just before a step: the cache, the ids, the inputs and the generator.

Everything here changes the loop state that ``generate``'s own setup created; no forward pass
runs, so a rewind costs the same whatever the context length.
"""

from __future__ import annotations

import copy

import torch

from lmscope.engine.cache_stats import CACHE_KWARGS, detached_copy, generation_cache

GROWING_INPUTS = ("attention_mask", "decoder_attention_mask", "position_ids", "decoder_position_ids",
                  "token_type_ids", "mm_token_type_ids")
"""Model kwargs that ``_update_model_kwargs_for_generation`` extends by one position per forward pass."""


def forwards_before(step: int, decoder_only: bool) -> int:
    """Forward passes run before ``step``: a decoder-only model's prefill already chose step 0."""
    return max(step, 1) if decoder_only else step


def rewind_state(state, step: int, decoder_only: bool) -> None:
    """Take the Stepper's loop ``state`` back to just before ``step``.

    Decoder-only: before step k >= 1 the cache holds the prompt plus k - 1 positions (the
    forward pass of step k feeds token k - 1); before step 0 it holds the prompt and step 0
    chooses again from the prefill's logits. T5: before step k the decoder's self-attention
    cache holds k positions; its cross-attention half (the encoder's keys and values) stays.

    Args:
        state: the Stepper's ``_State``.
        step: the step the next ``step()`` call will produce.
        decoder_only: True for the Llama family.
    """
    removed_forwards = forwards_before(state.generated, decoder_only) - forwards_before(step, decoder_only)
    removed_ids = state.generated - step
    if removed_ids == 0:
        return
    cache = generation_cache(state.model_kwargs)
    if removed_forwards and cache is not None:
        cache.crop(-removed_forwards)  # transformers 5: a negative count of positions to drop
    for name in GROWING_INPUTS:
        value = state.model_kwargs.get(name)
        if isinstance(value, torch.Tensor) and removed_forwards:
            state.model_kwargs[name] = value[..., : value.shape[-1] - removed_forwards]
    state.input_ids = state.input_ids[:, : state.input_ids.shape[1] - removed_ids]
    state.generated = step
    state.stopped = False
    if step == 0:
        if decoder_only:
            state.pending = state.prefill
        else:
            state.prefilled = False  # T5's first decoder pass runs through _prefill, as generate's does
    else:
        state.pending = None


def state_before(state, step: int, decoder_only: bool):
    """A copy of the Stepper's loop ``state`` as it was just before ``step``, to run that step's
    forward pass again (``Stepper`` replays a continue's layer captures): the live state, its
    cache included, stays as it is.

    The copy's cache is a new cache object over the live one's tensors: cropping it takes views,
    and a forward pass that appends to it makes new tensors (``DynamicLayer.update`` concatenates),
    so nothing the live session holds is written. Only for a cache that only appends
    (``cache_stats.only_appends``): a sliding window or an offloaded cache no longer holds the keys
    an earlier step saw.
    """
    copied = copy.copy(state)
    copied.model_kwargs = dict(state.model_kwargs)
    for name in CACHE_KWARGS:
        if copied.model_kwargs.get(name) is not None:
            copied.model_kwargs[name] = detached_copy(copied.model_kwargs[name])
    rewind_state(copied, step, decoder_only)
    return copied


class RngHistory:
    """The random generators' states before each sampling step, to restore on a rewind.

    ``torch.multinomial`` draws from the default generator of the device the scores are on;
    the CPU generator's state is 5 KiB, CUDA's a few bytes. Saved only when sampling.

    Args:
        device: the model's device.
    """

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.device = torch.device(device)
        self._states: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def clear(self) -> None:
        self._states.clear()

    def save(self, step: int) -> None:
        """Keep the generators' state as it is before ``step`` samples."""
        cuda_state = torch.cuda.get_rng_state(self.device) if self.cuda else None
        self._states[step] = (torch.get_rng_state(), cuda_state)

    def restore(self, step: int) -> None:
        """Put the generators back as they were before ``step``; forget the later states."""
        saved = self._states.get(step)
        if saved is not None:
            cpu_state, cuda_state = saved
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, self.device)
        for later in [s for s in self._states if s >= step]:
            del self._states[later]
