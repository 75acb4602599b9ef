"""Where a model's weights live when it is bigger than one device.

Two ways, both transformers' own, never combined (transformers refuses that too):

* accelerate's device map (``--device-map auto|balanced|sequential``, ``--max-memory``,
  ``--offload-folder``): whole decoder layers go to GPUs, the CPU or disk, and accelerate's
  hooks move each layer's weights where its inputs are. The registered attention function
  still runs in every layer, offloaded ones included, so capture stays exact.
* tensor parallel under ``torchrun`` (``engine/distributed.py``): every rank holds a slice of
  every layer's heads.

This module parses the flags, checks them before any weights load, builds the keyword
arguments for ``from_pretrained`` and summarises where the layers went, for the status bar.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass

from lmscope.engine.errors import UserError

DEVICE_MAPS = ("auto", "balanced", "sequential")
UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
"""accelerate's units: KB/MB/GB are powers of ten, KiB/MiB/GiB powers of two."""

# ASCII digits only, as every other number lmscope reads (``\d`` matches any script's: '\u0663' is 3)
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$")
_GPU = re.compile(r"^(?:cuda:)?([0-9]+)$")


class PlacementError(UserError):
    """A device-map or tensor-parallel flag is invalid; one line for the user."""


@dataclass(frozen=True)
class Placement:
    """How to spread one model over devices.

    Attributes:
        device_map: ``auto``, ``balanced``, ``sequential`` or None (one device, ``--device``).
        max_memory: accelerate's budget per device: ``{0: bytes, "cpu": bytes, ...}`` (GPU indices as ints).
        offload_folder: where accelerate writes layers it offloads to disk.
        ranks: tensor-parallel ranks (``WORLD_SIZE`` under torchrun); 1 without torchrun.
    """

    device_map: str | None = None
    max_memory: dict | None = None
    offload_folder: str | None = None
    ranks: int = 1

    @property
    def spread(self) -> bool:
        """Whether transformers places the weights (so lmscope must not move the model)."""
        return self.device_map is not None or self.ranks > 1

    def load_kwargs(self) -> dict:
        """Extra keyword arguments for ``from_pretrained``."""
        if self.ranks > 1:
            from transformers.distributed import DistributedConfig

            return {"distributed_config": DistributedConfig(tp_plan="auto")}
        if self.device_map is None:
            return {}
        kwargs = {"device_map": self.device_map}
        if self.max_memory:
            kwargs["max_memory"] = dict(self.max_memory)
        if self.offload_folder:
            kwargs["offload_folder"] = self.offload_folder
        return kwargs

    def check_heads(self, config) -> None:
        """Refuse tensor parallel over ranks that do not divide the heads (query and key-value)."""
        if self.ranks <= 1:
            return
        heads = getattr(config, "num_attention_heads", None) or getattr(config, "num_heads", None)
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        if heads % self.ranks or kv_heads % self.ranks:
            raise PlacementError(
                f"tensor parallel over {self.ranks} ranks needs heads that divide by {self.ranks}: the model has "
                f"{heads} query heads and {kv_heads} key-value heads (run with a --nproc-per-node that divides both)"
            )


def placement_of(options) -> Placement:
    """The Placement the session options ask for (``SessionOptions``), checked; PlacementError if not."""
    ranks = world_size()
    has_map_flags = options.max_memory is not None or options.offload_folder is not None
    if options.device_map is None:
        if has_map_flags:
            raise PlacementError("--max-memory and --offload-folder need --device-map auto, balanced or sequential")
    elif options.device_map not in DEVICE_MAPS:
        raise PlacementError(f"unknown --device-map {options.device_map!r}: use auto, balanced or sequential")
    elif options.device != "auto":
        raise PlacementError(f"--device-map places the layers itself: leave --device at auto (not {options.device!r})")
    if ranks > 1 and options.device_map is not None:
        raise PlacementError("--device-map cannot be combined with tensor parallel under torchrun: "
                             "use one or the other")
    if ranks > 1 and options.device != "auto":
        raise PlacementError(f"under torchrun each rank takes its own device (LOCAL_RANK): leave --device at auto, "
                             f"not {options.device!r}")
    max_memory = parse_max_memory(options.max_memory) if options.max_memory is not None else None
    if max_memory:
        check_devices_exist(max_memory)
    if options.offload_folder is not None:
        check_offload_folder(options.offload_folder)
    return Placement(options.device_map, max_memory, options.offload_folder, ranks)


def check_devices_exist(budget: dict) -> None:
    """Refuse a ``--max-memory`` device this machine does not have (accelerate would fail with
    a RuntimeError while loading)."""
    import torch

    gpus = [key for key in budget if isinstance(key, int)]
    if gpus and not torch.cuda.is_available():
        raise PlacementError(f"--max-memory names cuda:{gpus[0]}, but no CUDA GPU is available here: "
                             "budget cpu and disk only, or leave --max-memory out")
    count = torch.cuda.device_count() if gpus else 0
    missing = [gpu for gpu in gpus if gpu >= count]
    if missing:
        raise PlacementError(f"--max-memory names cuda:{missing[0]}, but only {count} GPU(s) exist "
                             f"(cuda:0 to cuda:{count - 1})")
    if "mps" in budget and not torch.backends.mps.is_available():
        raise PlacementError("--max-memory names mps, but no Apple GPU (MPS) is available here")


def check_offload_folder(folder: str) -> None:
    """Refuse an ``--offload-folder`` that is, or lies under, something other than a folder, or
    that cannot be written (accelerate creates a missing one, and fails on a file with a bare
    errno, on a read-only place only once the weights are loading)."""
    import stat
    from pathlib import Path

    if not folder.strip():
        raise PlacementError("--offload-folder is empty: name a folder (a missing one is created)")
    path = Path(folder).expanduser()
    for existing in (path, *path.parents):
        if _stat_or_none(folder, existing, follow=False) is not None:
            break
    found = _stat_or_none(folder, existing)  # where a link leads; None: it leads nowhere
    if found is not None and stat.S_ISDIR(found.st_mode):
        _check_writable(folder, path, existing)
        return
    what = "a file" if found is not None else "a broken link"
    if existing == path:
        raise PlacementError(f"--offload-folder {folder!r} is {what}, not a folder: name a folder "
                             "(a missing one is created)")
    raise PlacementError(f"--offload-folder {folder!r} cannot be made: {str(existing)!r} is {what}, not a folder")


def _stat_or_none(folder: str, path, follow: bool = True) -> os.stat_result | None:
    """``path``'s stat, or None where nothing is there (or a file stands where a folder of it
    should be: :func:`check_offload_folder` names that file). A name the OS cannot look up (a
    part over 255 bytes, a link loop) is one line: ``Path.exists`` raised its OSError, which
    ended the run with exit code 1."""
    from lmscope.engine.checks import reason

    try:
        return os.stat(path, follow_symlinks=follow)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise PlacementError(f"--offload-folder {folder!r}: {reason(error)}") from None


def _check_writable(folder: str, path, existing) -> None:
    """Make and remove a folder in ``existing`` (the offload folder, or the nearest folder above
    it that exists): permission bits do not tell, for root, that /proc takes no new folders."""
    import shutil
    import tempfile

    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=".lmscope-probe-", dir=existing))
    except OSError as error:
        where = "cannot be written" if existing == path else f"cannot be made in {str(existing)!r}"
        raise PlacementError(f"--offload-folder {folder!r} {where} ({error.strerror or error}): "
                             "name a folder you can write to") from error


def world_size() -> int:
    """Processes in this run: torchrun's ``WORLD_SIZE``, else 1."""
    text = os.environ.get("WORLD_SIZE", "1")
    return int(text) if text.isdigit() and int(text) > 0 else 1


def parse_max_memory(text: str) -> dict:
    """``cpu=20GB,cuda:0=10GB`` -> ``{"cpu": 20_000_000_000, 0: 10_000_000_000}`` (accelerate's keys).

    Devices: ``cpu``, ``disk``, ``mps``, ``cuda:N`` or ``N``. Sizes: a number with B, KB, MB, GB,
    TB, KiB, MiB, GiB or TiB (case-insensitive); ``0GiB`` keeps a device empty (accelerate puts
    what does not fit the other devices on disk).

    Raises:
        PlacementError: any entry that is not ``DEVICE=SIZE``, an unknown device, a size without a
            unit or with an unknown one, a device twice.
    """
    budget: dict = {}
    for entry in text.split(","):
        device, sep, size = (part.strip() for part in entry.partition("="))
        if not sep or not device or not size:
            raise PlacementError(f"bad --max-memory entry {entry.strip()!r}: expected DEVICE=SIZE, "
                                 "e.g. cpu=20GB,cuda:0=10GB")
        key = _device_key(device)
        if key in budget:
            raise PlacementError(f"--max-memory names {device!r} twice")
        budget[key] = _bytes(size)
    return budget


def _device_key(device: str):
    gpu = _GPU.match(device)
    if gpu:
        return int(gpu.group(1))
    if device in ("cpu", "disk", "mps"):
        return device
    raise PlacementError(f"unknown device {device!r} in --max-memory: use cpu, disk, mps, cuda:N or N")


def _bytes(size: str) -> int:
    """``20GB`` -> 20_000_000_000. A number alone is refused, not read as bytes: accelerate
    refuses such a string too, and ``cpu=20`` meant as 20 GB would be 20 bytes, which puts every
    layer on disk without a word."""
    match = _SIZE.match(size)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in UNITS:
        raise PlacementError(f"bad size {size!r} in --max-memory: a number and its unit, e.g. cpu=8GiB "
                             "(B, KB, MB, GB or TB, powers of ten; KiB, MiB, GiB or TiB, powers of two)")
    return int(float(match.group(1)) * UNITS[unit])


# -- after loading ---------------------------------------------------------------------------

_LAYER = re.compile(r"(?:^|\.)(?:layers|block|h)\.\d+$")


def layer_devices(model) -> dict[str, str]:
    """Each transformer layer's module name -> where accelerate put it (``cuda:0``, ``cpu``, ``disk``).

    ``hf_device_map`` names modules at whatever depth accelerate split the model (``""`` for all
    of it, ``model.layers.3`` for one layer): each layer takes the entry of its longest prefix.
    """
    device_map = getattr(model, "hf_device_map", None) or {"": model.device}  # it all fit on one device
    found = {}
    for name, _ in model.named_modules():
        if not _LAYER.search(name):
            continue
        owners = [key for key in device_map if key == "" or name == key or name.startswith(key + ".")]
        if owners:
            found[name] = _device_name(device_map[max(owners, key=len)])
    return found


def _device_name(device) -> str:
    return f"cuda:{device}" if isinstance(device, int) else str(device)


def describe(model, placement: Placement) -> str:
    """The status bar's summary: ``device map: 20 layers cuda:0 · 8 cpu · 2 disk`` or
    ``tensor parallel: 3 ranks (gloo)``."""
    if placement.ranks > 1:
        import torch.distributed as dist

        backend = dist.get_backend() if dist.is_initialized() else "?"
        return f"tensor parallel: {placement.ranks} ranks ({backend}), rank 0 shown"
    if placement.device_map is None:
        return ""
    counts = Counter(layer_devices(model).values())
    parts = [f"{count} {device}" for device, count in counts.items()]
    return (f"device map {placement.device_map}: layers " + " · ".join(parts) if parts
            else f"device map {placement.device_map}")


def input_device(model):
    """Where the model's inputs go: its embedding's execution device (see :func:`execution_device`)."""
    return execution_device(model.get_input_embeddings())


def execution_device(module):
    """Where ``module`` computes: accelerate's hook knows, else its weights' device.

    A layer accelerate offloaded to disk or CPU has its weights on ``meta`` (or the CPU) between
    calls, and its hook brings them to the execution device for each call; inputs belong there.
    """
    import torch

    device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
    if device is not None:
        return torch.device(_device_name(device))
    return next(module.parameters()).device
