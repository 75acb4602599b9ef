"""Let ``model.generate`` itself prepare a generation, then hand its state to lmscope's loop.

``generate`` accepts a ``custom_generate`` callable and calls it, after all of its own setup,
in place of its decoding loop. lmscope passes one that only returns what it was given: the
merged and validated GenerationConfig, the LogitsProcessorList and StoppingCriteriaList in
transformers' order, the decoder's input ids (T5: the decoder start token) and the model
kwargs (the cache, T5's encoder outputs, ``logits_to_keep`` ...). Nothing of that setup is
re-implemented here, so the stepping loop starts from exactly what ``generate`` would use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
    with torch.no_grad():
        model.generate(prompt_ids, custom_generate=capture, **kwargs)
    return captured[0]
