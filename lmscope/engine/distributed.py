"""Tensor parallel under torchrun: rank 0 leads, every other rank follows its engine calls in lockstep.

Every rank holds a slice of each layer's heads (transformers' tensor parallel), so every forward
pass needs every rank. Rank 0 runs the TUI or the headless printer with a :class:`BroadcastEngine`:
before each engine call runs there, its method name and arguments are broadcast, and the other
ranks (:class:`Follower`) run the same call on their own Stepper. Nothing here knows the method
names: ``step``, ``step(force=...)``, ``rewind``, ``start`` (restart), ``lens`` ... all follow alike;
pausing is simply not calling. ``quit`` ends the followers.

Commands travel on their own gloo group with a long timeout (a follower waits as long as the user
reads); the model's own collectives keep the default group. After each call the ranks exchange
how it ended: a user error every rank raised alike (a bad ``force`` id) keeps the session; anything
else ends every rank with one line and a non-zero exit. A follower that fails inside a call exits
at once, which breaks the collectives the others wait in, so nobody hangs.

The attention function receives each rank's local heads; :func:`gather_heads` gathers the kept rows
so rank 0's records hold every head, in rank order (the order of the heads in the full model).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from contextlib import contextmanager
from datetime import timedelta

from lmscope.engine.errors import UserError, first_line
from lmscope.streams import say

COMMAND_TIMEOUT = timedelta(days=7)
"""How long a follower waits for rank 0's next command: as long as someone may read a step."""

_GATHER = False
"""True once a tensor-parallel session is attached: attention rows are gathered over the ranks."""
_LEADER: BroadcastEngine | None = None


class RanksFailed(RuntimeError):
    """A rank failed or vanished: the ranks are out of lockstep, so the session must end."""

    ends_session = True
    """The TUI exits on this error instead of showing it and going on."""


def rank() -> int:
    """This process's rank under torchrun (``RANK``), else 0."""
    text = os.environ.get("RANK", "0")
    return int(text) if text.isdigit() else 0


def tensor_parallel_ranks() -> int:
    """Ranks the model's heads are split over (1 outside a tensor-parallel session)."""
    if not _GATHER:
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def gather_heads(probs):
    """Every rank's kept rows, heads concatenated in rank order: ``[batch, head, rows, key_pos]``.

    Args:
        probs: this rank's ``[batch, local_head, rows, key_pos]``. Every rank calls this in the
            same attention calls in the same order (the same model, options and inputs).
    """
    if not _GATHER:
        return probs
    import torch
    import torch.distributed as dist

    probs = probs.contiguous()
    parts = [torch.empty_like(probs) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, probs)
    return torch.cat(parts, dim=1)


def attach(stepper, ranks: int):
    """Join the ranks after loading: rank 0 gets a BroadcastEngine, the others a Follower.

    Every rank calls this in the same order. All ranks then share one seed, so sampling without
    ``--seed`` draws the same token everywhere (the gathered logits are identical on every rank).
    """
    global _GATHER, _LEADER
    if ranks <= 1:
        return stepper
    import torch
    import torch.distributed as dist

    channel = dist.new_group(backend="gloo", timeout=COMMAND_TIMEOUT)
    seed = [int.from_bytes(os.urandom(4), "little") if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(seed, src=0, group=channel)
    torch.manual_seed(seed[0])
    _GATHER = True
    if dist.get_rank() > 0:
        return Follower(stepper, channel)
    _LEADER = BroadcastEngine(stepper, channel)
    return _LEADER


def _outcome(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {first_line(error)}"


def _exchange(channel, outcome: str | None) -> list:
    import torch.distributed as dist

    outcomes = [None] * dist.get_world_size(group=channel)
    dist.all_gather_object(outcomes, outcome, group=channel)
    return outcomes


def _send(channel, command: tuple) -> None:
    import torch.distributed as dist

    dist.broadcast_object_list([command], src=0, group=channel)


def _receive(channel) -> tuple:
    import torch.distributed as dist

    box = [None]
    dist.broadcast_object_list(box, src=0, group=channel)
    return box[0]


class BroadcastEngine:
    """Rank 0's engine: each method call is broadcast to the followers, then run here.

    Attributes (``info``, ``finished``) are read locally; calls are serialised by a lock so the
    followers receive them in the order they run here (the TUI calls from worker threads).
    """

    def __init__(self, engine, channel):
        self._engine, self._channel = engine, channel
        self._lock = threading.Lock()
        self.broken: str | None = None
        """Why the ranks left lockstep (then every call fails), or ``"closed"``."""

    @property
    def info(self):
        return self._engine.info

    @property
    def finished(self) -> bool:
        return self._engine.finished

    def rows_written(self, wait: bool = False) -> bool:
        """Rank 0's own rows, not broadcast: only its records reach the UI, and a continue asks
        after every step (each rank's next plain ``complete_waiting`` waits for its own)."""
        with self._lock:
            return self._engine.rows_written(wait)

    def prepare_next(self) -> None:
        """Rank 0's own row store, not broadcast (optional work needs no lockstep)."""
        with self._lock:
            self._engine.prepare_next()

    def __getattr__(self, name: str):
        value = getattr(self._engine, name)
        if name.startswith("_") or not callable(value):
            return value
        return functools.partial(self._call, name)

    def _call(self, name: str, *args, **kwargs):
        with self._lock:
            if self.broken is not None:
                raise RanksFailed(f"the ranks have stopped: {self.broken}")
            self._guard(_send, self._channel, (name, args, kwargs))
            try:
                result, error = getattr(self._engine, name)(*args, **kwargs), None
            except UserError as raised:  # every rank checks alike: they all raise it, the session goes on
                result, error = None, raised
            except Exception as raised:
                self.broken = _describe(0, raised)
                raise RanksFailed(self.broken) from None
            outcomes = self._guard(_exchange, self._channel, _outcome(error))
            for other, outcome in enumerate(outcomes):
                if outcome != outcomes[0]:
                    self.broken = f"rank {other} " + (f"failed: {outcome}" if outcome else "did not fail as rank 0 did")
                    raise RanksFailed(self.broken)
            if error is not None:
                raise error
            return result

    def _guard(self, function, *args):
        """Run a command-channel collective; a vanished rank becomes RanksFailed."""
        try:
            return function(*args)
        except Exception as raised:  # noqa: BLE001 - gloo's errors have no common class
            self.broken = f"lost contact with another rank: {first_line(raised)}"
            raise RanksFailed(self.broken) from None

    def close(self, command: str = "quit") -> None:
        """Tell the followers to end: ``quit`` (exit 0) or ``abort`` (rank 0 failed: exit 1)."""
        with self._lock:
            if self.broken is None:
                self.broken = "closed"
                try:
                    _send(self._channel, (command, (), {}))
                except Exception:  # noqa: BLE001 - followers already gone: nothing to tell
                    pass


def _describe(rank_number: int, error: BaseException) -> str:
    text = f"{type(error).__name__}: {first_line(error)}"
    if "gloo" in text.lower() or "nccl" in text.lower() or type(error).__name__ == "DistBackendError":
        return f"lost contact with another rank (its own line says why): {text}"
    return f"rank {rank_number}: {text}"


class Follower:
    """A rank > 0: runs the calls rank 0 broadcasts, on its own engine, until ``quit``."""

    def __init__(self, engine, channel):
        self._engine, self._channel = engine, channel

    @property
    def info(self):
        return self._engine.info

    def follow(self) -> int:
        """Run rank 0's calls until it quits; returns this process's exit code."""
        import torch.distributed as dist

        me = dist.get_rank()
        while True:
            try:
                name, args, kwargs = _receive(self._channel)
            except Exception:  # noqa: BLE001 - rank 0 ended without a word: it prints why
                return 1
            if name in ("quit", "abort"):
                return 0 if name == "quit" else 1
            error = None
            try:
                getattr(self._engine, name)(*args, **kwargs)
            except UserError as raised:
                error = raised
            except Exception as raised:  # noqa: BLE001 - any other failure ends every rank
                say(f"lmscope: error: {_describe(me, raised)}")
                os._exit(1)  # the others may wait in this call's collectives: ending the process frees them
            try:
                outcomes = _exchange(self._channel, _outcome(error))
            except Exception:  # noqa: BLE001
                return 1
            if any(outcome != outcomes[0] for outcome in outcomes):
                return 1


@contextmanager
def leading():
    """Around rank 0's session: tell the followers to quit at the end, or to abort on failure."""
    try:
        yield
    except BaseException:
        finish("abort")
        raise
    finish("quit")


def finish(command: str = "quit") -> None:
    """End the followers (rank 0) and release the process group (every rank)."""
    global _LEADER
    if _LEADER is not None:
        _LEADER.close(command)
        _LEADER = None
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - the process is ending anyway
        pass


def follow_session(options) -> int:
    """A follower rank's whole life: load its shard quietly, follow rank 0, return the exit code."""
    import warnings

    from transformers.utils import logging as hf_logging

    from lmscope.engine.session import open_session

    sys.stdout = open(os.devnull, "w")  # only rank 0 prints
    os.environ["TQDM_DISABLE"] = "1"
    warnings.simplefilter("ignore")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    follower = open_session(options)
    code = follower.follow()
    finish()
    return code
