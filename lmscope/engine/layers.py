"""Each decoder layer's output at the last position: the residual stream, captured per step.

Forward hooks on transformers' own layer modules (Llama: ``model.layers``; T5: ``decoder.block``)
take the last position of each layer's output, ``[d_model]``, and keep it on the model's device.
After the forward pass the slices are stacked and copied once, ``[layers, d_model]`` float32,
into the :class:`RowStore` (off the Python heap): no per-layer synchronisation or transfer.
Every captured output is *before* the final norm, the last layer's included, so the logit lens
(``engine/lens.py``) applies the final norm to all layers alike.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from lmscope.engine.row_store import RowStore


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder's layer modules, in order (Llama-like: ``layers``; T5: ``block``)."""
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    return layers if layers is not None else decoder.block


class LayerCapture:
    """Captures the residual stream of the last position at every decoder layer.

    ``last`` is the most recent capture, a read-only ``[layers, d_model]`` float32 array.
    """

    def __init__(self, model):
        self.layers = decoder_layers(model)
        self.last: np.ndarray | None = None

    @contextmanager
    def capture(self, store: RowStore):
        """Hook every layer for one forward pass, then store the stacked outputs in ``store``."""
        slices: list[torch.Tensor] = []

        def hook(_module, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output  # T5 blocks return a tuple
            slices.append(hidden[0, -1].detach())  # [d_model], a view: stays on device

        handles = [layer.register_forward_hook(hook) for layer in self.layers]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
        if len(slices) == len(self.layers):
            self.last = store.put(torch.stack(slices))  # one copy per step: [layers, d_model]
