"""Let ``model.generate`` itself prepare a generation, then hand its state to lmscope's loop.

``generate`` accepts a ``custom_generate`` callable and calls it, after all of its own setup,
in place of its decoding loop. lmscope passes one that only returns what it was given: the
merged and validated GenerationConfig, the LogitsProcessorList and StoppingCriteriaList in
transformers' order, the decoder's input ids (T5: the decoder start token) and the model
kwargs (the cache, T5's encoder outputs, ``logits_to_keep`` ...). Nothing of that setup is
re-implemented here, so the stepping loop starts from exactly what ``generate`` would use.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from lmscope.engine.cache_stats import full_cache
from lmscope.engine.models import decoder_config


GENERATION_MODE_KWARGS = ("tokenizer", "assistant_tokenizer", "assistant_model", "streamer", "synced_gpus")


@dataclass
class PreparedGeneration:
    """What ``generate`` hands its decoding method.

    Attributes:
        input_ids: ``[1, seq]`` ids the loop extends (the prompt, or T5's decoder start).
        processors: transformers ``LogitsProcessorList``, in its order.
        stopping_criteria: transformers ``StoppingCriteriaList``.
        generation_config: the merged, validated GenerationConfig.
        model_kwargs: cache, attention masks, encoder outputs ... as ``_sample`` receives them.
    """

    input_ids: torch.Tensor
    processors: object
    stopping_criteria: object
    generation_config: object
    model_kwargs: dict


def prepare(model, prompt_ids: torch.Tensor, generate_kwargs: dict) -> PreparedGeneration:
    """Run ``generate``'s setup for ``prompt_ids [1, seq]`` and return its prepared state.

    For T5 this runs the encoder, once, as ``generate`` does.
    """
    captured: list[PreparedGeneration] = []

    def capture(model, input_ids, logits_processor, stopping_criteria, generation_config, **model_kwargs):
        for mode_only in GENERATION_MODE_KWARGS:  # generate's own plumbing, not model inputs
            model_kwargs.pop(mode_only, None)
        captured.append(
            PreparedGeneration(input_ids, logits_processor, stopping_criteria, generation_config, model_kwargs)
        )
        return input_ids

    kwargs = dict(generate_kwargs)
    if not model.config.is_encoder_decoder and _takes_a_dynamic_cache(model):
        # In place of whatever cache the model's generation config asks for: a static or hybrid
        # one (a generation config's cache_implementation) serves compiled generation, and
        # neither crops for a rewind nor keeps a sliding window's earlier keys.
        kwargs[_cache_kwarg(model)] = full_cache(decoder_config(model.config))
        kwargs["cache_implementation"] = None
    with torch.no_grad():
        model.generate(prompt_ids, custom_generate=capture, **kwargs)
    return captured[0]


def _takes_a_dynamic_cache(model) -> bool:
    """Whether ``generate`` would give ``model`` a ``DynamicCache`` (a model with a cache of its
    own, such as MiniMax's linear attention, refuses one)."""
    supports = getattr(model, "_supports_default_dynamic_cache", None)
    return supports is None or supports()


def _cache_kwarg(model) -> str:
    """What ``generate`` calls a cache it is handed: ``cache`` from transformers 5.24 (the older
    name still works there, with a deprecation warning), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
