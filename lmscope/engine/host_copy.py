"""One device-to-host copy per step.

On a GPU a step takes milliseconds, and every ``.item()``, ``.tolist()`` or ``.cpu()`` on a
device tensor waits for the device and makes a transfer of its own: a step that read its token
id, stop flag, stages, attention rows and layer capture separately synchronised nine times.
Instead each part is registered here while it is still on the device, and :meth:`HostCopy.copy`
joins the bytes of all of them with one ``torch.cat`` on the device, copies that once, and hands
each part back as a numpy array (a view into the one host buffer, with the part's own dtype).
On the CPU the parts are on the host already: each is read where it is, with no join and no copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import torch


@dataclass
class Part:
    """One registered tensor; ``array`` holds its values once the step's copy is made."""

    tensor: torch.Tensor | None
    on_copied: Callable[[np.ndarray], None] | None = None
    array: np.ndarray | None = None


@dataclass
class HostCopy:
    """The device tensors of one step, copied to the host together."""

    parts: list[Part] = field(default_factory=list)
    copies: int = 0
    """How many device-to-host copies :meth:`copy` made (one per call with parts on a device; for tests)."""
    join_on_host: ClassVar[bool] = False
    """Join and copy even when every part is on the host (tests: the device path, on a CPU)."""

    def add(self, tensor: torch.Tensor, on_copied: Callable[[np.ndarray], None] | None = None) -> Part:
        """Register ``tensor`` (any device, dtype and shape); ``on_copied(array)`` runs after the copy."""
        part = Part(tensor.detach(), on_copied)
        self.parts.append(part)
        return part

    def copy(self) -> None:
        """Copy every registered part to the host in one transfer and fill each ``array``."""
        parts, self.parts = self.parts, []
        if not parts:
            return
        if not self.join_on_host and all(part.tensor.device.type == "cpu" for part in parts):
            # On the host already: joining would be three operations a part and a copy for nothing.
            # Every part is a tensor the step made for itself, so nothing changes it afterwards.
            for part in parts:
                part.array, part.tensor = part.tensor.numpy(), None
        else:
            self._join_and_copy(parts)
        for part in parts:
            if part.on_copied is not None:
                part.on_copied(part.array)

    def _join_and_copy(self, parts: list[Part]) -> None:
        # Largest items first: every part then starts at a multiple of its own item size.
        ordered = sorted(parts, key=lambda part: -part.tensor.element_size())
        device = ordered[0].tensor.device
        flat = torch.cat([_bytes(part.tensor, device) for part in ordered])
        host = flat.cpu().numpy()
        self.copies += 1
        offset = 0
        for part in ordered:
            tensor = part.tensor
            dtype = _NUMPY[tensor.dtype]
            count = tensor.numel()
            part.array = np.frombuffer(host, dtype=dtype, count=count, offset=offset).reshape(tensor.shape)
            offset += count * tensor.element_size()
            part.tensor = None


def _bytes(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The tensor's bytes as a flat uint8 tensor on ``device`` (a device map may spread the parts)."""
    if tensor.device != device:
        tensor = tensor.to(device)
    return tensor.contiguous().reshape(-1).view(torch.uint8)


_NUMPY = {
    torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16,
    torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16, torch.int8: np.int8,
    torch.uint8: np.uint8, torch.bool: np.bool_,
}
