"""The logit lens: every decoder layer's residual stream read through the final norm and the LM head.

For a step, the captured ``[layers, d_model]`` residuals (``engine/layers.py``) go through the
model's own final norm (Llama: ``model.norm``; T5: ``decoder.final_layer_norm`` then the
``d_model**-0.5`` scaling when ``config.scale_decoder_outputs``) and its own ``lm_head`` in one
batched matmul. The captured outputs are all pre-norm, so the last layer's lens is exactly the
logits the step sampled from.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from lmscope.engine.models import decoder_config
from lmscope.engine.placement import execution_device
from lmscope.engine.records import Candidate, LayerLens


def lens_logits(model, residual: torch.Tensor) -> torch.Tensor:
    """``[layers, d_model]`` residuals -> ``[layers, vocab]`` float32 logits, as the model's head makes them."""
    decoder = model.get_decoder()
    norm = decoder.norm if hasattr(decoder, "norm") else decoder.final_layer_norm
    head = model.get_output_embeddings()
    with torch.no_grad():
        hidden = norm(residual.to(execution_device(head), head.weight.dtype))  # not meta: a device map may offload it
        config = decoder_config(model.config)
        if getattr(config, "scale_decoder_outputs", False):  # T5 with tied embeddings
            hidden = hidden * (config.d_model**-0.5)
        logits = head(hidden)
        cap = getattr(config, "final_logit_softcapping", None)
        if cap is not None:  # Gemma 2 caps its logits after the head, in the head's dtype
            logits = torch.tanh(logits / cap) * cap
        return logits.float()


def logit_lens(model, residual: np.ndarray, chosen_id: int, token: Callable[[int], str], top: int = 3
               ) -> tuple[LayerLens, ...]:
    """The lens of every layer for one step; ``residual`` is ``[layers, d_model]``."""
    hidden = torch.from_numpy(np.array(residual, dtype=np.float32))
    logits = lens_logits(model, hidden).cpu()  # [layers, vocab]
    logp = torch.log_softmax(logits, dim=-1)
    probs = logp.exp()
    entropy = -(probs * logp).nan_to_num().sum(-1)
    chosen = probs[:, chosen_id]
    # Ranked by logits, not probabilities: the order is the same wherever the probabilities
    # differ, and a confident layer's runners-up whose probabilities underflow to 0 keep theirs.
    ranks = (logits > logits[:, chosen_id, None]).sum(-1)
    top_i = logits.topk(top, dim=-1).indices
    top_p = probs.gather(-1, top_i)
    norms = hidden.norm(dim=-1)
    return tuple(
        LayerLens(
            layer=i,
            top=tuple(Candidate(int(t), token(int(t)), float(logits[i, t]), float(p))
                      for t, p in zip(top_i[i], top_p[i])),
            chosen_prob=float(chosen[i]), chosen_rank=int(ranks[i]), entropy=float(entropy[i]), norm=float(norms[i]),
        )
        for i in range(hidden.shape[0])
    )
