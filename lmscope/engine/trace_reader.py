"""Reading a trace: :class:`Trace`, a recorded session opened read-only, its records built on
demand and their rows mapped lazily. The file's bytes: :mod:`lmscope.engine.trace_file`; what a
chunk's JSON must hold: :mod:`lmscope.engine.trace_checks`."""

from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lmscope.engine.errors import first_line, is_index
from lmscope.engine.mapped_rows import read_ahead
from lmscope.engine.records import AttentionRows, PromptRecord, StepRecord
from lmscope.engine.trace import lens_from_list, prompt_from_dict, step_from_dict
from lmscope.engine.trace_checks import (
    STEP_KEYS, check_note, check_prompt, check_step, info_from_dict, is_whole, short_json,
)
from lmscope.engine.trace_file import Chunk, TraceFile, damage_at, in_order, scan
from lmscope.engine.trace_format import CHUNK_HEADER, FILE_HEADER, ROW_DTYPES, ROW_KINDS, TraceError


@dataclass(frozen=True)
class Rewind:
    """A rewind before ``step`` (a RWND chunk): the live branch's steps from ``step`` on, if
    any, are set aside, whether or not a step follows."""

    step: int


@dataclass(frozen=True)
class Resumed:
    """A branch resumed at ``step`` (a RSUM chunk): the steps written at ``places`` (by their
    place among the STEP chunks, as :meth:`Trace.every_step` numbers them) are live again."""

    step: int
    places: tuple[int, ...]


class Trace:
    """A recorded session, opened read-only: records are built on demand, rows mapped lazily.

    Args:
        path: the trace file.

    Raises:
        TraceError: an empty path, missing, empty, not a trace, a newer format, or no session in it.
    """

    def __init__(self, path: str | os.PathLike):
        if not os.fspath(path):  # Path("") is ".", which would be refused as a folder
            raise TraceError("the trace to open was given as an empty path: name a file written by --record")
        self.path = Path(path)
        self._file = TraceFile(self.path)
        self._bytes = self._file.mapped()
        self._texts: dict[int, bytes] = {}
        """The JSON part of each chunk the scan read and checked, by where it starts, until it is read."""
        self._chunks = in_order(list(scan(self._file, self._texts)))
        if not self._chunks or self._chunks[0].kind != b"META":
            damage = damage_at(self._file, FILE_HEADER.size)
            why = ("it was cut before the first chunk" if damage is None else
                   f"its first chunk is damaged: {damage}" if damage else "its first chunk is damaged")
            raise TraceError(f"{str(self.path)!r} has no session in it ({why})")
        self.meta = self._body(self._chunks[0])["data"]
        self.info = self._decoded(self._chunks[0], info_from_dict, self.meta.get("info"))
        dtype = self.meta.get("rows_dtype", "float32")
        if dtype not in ROW_DTYPES:
            raise TraceError(f"{str(self.path)!r} has no session in it (its first chunk names rows of {dtype!r}, "
                             f"not one of {', '.join(ROW_DTYPES)})")
        self.rows_dtype = np.dtype(dtype).newbyteorder("<")
        prompts = [c for c in self._chunks if c.kind == b"PRMT"]
        if not prompts:
            damage = damage_at(self._file, self._chunks[-1].end, self.rows_dtype.itemsize)
            if damage is not None:
                raise TraceError(f"{str(self.path)!r} has a damaged chunk before its prompt{_said(damage)}: "
                                 "no session to show")
            raise TraceError(f"{str(self.path)!r} was cut before its prompt was recorded")
        self._prompt_chunk = prompts[-1]
        """The last prompt: a restart encodes the prompt again and the session begins again
        there; what came before it is not shown, as the restarted TUI no longer shows it."""
        self._session_at = self._chunks.index(self._prompt_chunk)
        self._prompt_length = 0
        """Tokens in the prompt: the keys of its rows, and of every llama step's rows after them."""
        self._prompt = self._read_prompt()
        self._resumes: dict[int, Resumed] = {}
        """By the RSUM chunk's index in ``_chunks``: the resumes that hold (:meth:`_resumed`)."""
        self._reruns: set[int] = set()
        """Where the STEP chunks that re-ran a resumed branch's tokens start: no steps of their own."""
        self._rewinds: set[int] = set()
        """By index in ``_chunks``: the RWND chunks that hold and are no resume's (a resume
        rewinds too, but leaves the branch it left whole)."""
        self._written: list[tuple[Chunk, list[Chunk]]] = []
        """Every STEP chunk and the NOTE and LENS chunks written beside it, by its place."""
        self._place_at: dict[int, int] = {}
        """Each STEP chunk's place (its index in ``_written``), by where its JSON starts."""
        self._steps = self._live_steps()
        live = {chunk.body.start for step, notes in self._steps for chunk in (step, *notes)}
        self._texts = {at: text for at, text in self._texts.items() if at in live}  # not a rewound step's
        self.unread = self._file.size - self._chunks[-1].end
        """Bytes after the last whole chunk: a chunk cut short or a damaged one, and what follows."""
        damage = damage_at(self._file, self._chunks[-1].end, self.rows_dtype.itemsize) if self.unread else None
        self.damaged = damage is not None
        """Whether the chunk the reading stopped at was changed, not cut (:func:`damage_at`)."""
        self._damage = damage or ""

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def truncated(self) -> TraceError | None:
        """The error of the first read that found the file shorter than it was when it opened
        (truncated while open: what it held is gone), else None."""
        return self._file.truncated

    @property
    def recorded(self) -> str:
        return self.meta.get("recorded", "?")

    @property
    def tail(self) -> str:
        """How the file ends: "" (every byte read), "cut short" or "damaged"."""
        return "" if not self.unread else "damaged" if self.damaged else "cut short"

    @property
    def tail_notice(self) -> str:
        """What of the file is not shown, in a sentence; "" when every byte was read."""
        shown = "step before it is shown" if len(self) == 1 else "steps before it are shown"
        if self.tail == "damaged":
            return (f"a chunk {self.unread} bytes before the end is damaged{_said(self._damage)}: "
                    f"the {len(self)} {shown}, none recorded after it")
        if self.tail == "cut short":
            return (f"the last {self.unread} bytes are a chunk cut short (the recorder stopped while writing it, "
                    f"or is still writing): the {len(self)} whole {shown}")
        return ""

    def prompt(self) -> PromptRecord:
        return self._prompt

    def _read_prompt(self) -> PromptRecord:
        """The prompt, read (and checked) once, when the trace opens: a damaged one is a TraceError there."""
        chunk = self._prompt_chunk
        body = self._body(chunk)
        record = self._decoded(chunk, lambda data: prompt_from_dict(check_prompt(data)), body["data"])
        ids, tokens = record.input_ids, record.input_tokens
        if not (record.family == self.info.family and 0 < len(ids) == len(tokens)
                and all(is_whole(i) for i in ids) and all(type(t) is str for t in tokens)):
            raise self._damaged(chunk, f"its {len(ids)} input ids and {len(tokens)} tokens are not "
                                       f"a {self.info.family} prompt")
        self._prompt_length = len(ids)
        rows = self._load(chunk, body)[1]
        return record if not rows else replace(record, attention=rows["attention"])

    def step_data(self, index: int) -> dict:
        """Step ``index`` as ``--json`` printed it (without attention and layers), notes included;
        a step :meth:`step` refuses is refused here, with the same TraceError."""
        data = dict(self._read_step(self._step_chunks(index)[0])[0])
        data.update(self.hit(index) or {})  # its breakpoint hit; a lens is read apart (lens_data)
        return data

    def hit(self, index: int) -> dict | None:
        """The breakpoint hit recorded at step ``index`` (``breakpoints.hit_note``: its number,
        expression and values), None where none was. A note ``--json`` refuses is refused here."""
        return self._hit(self._step_chunks(index)[1])

    def place(self, index: int) -> int:
        """Where step ``index`` of the live branch was written (:meth:`every_step`'s place)."""
        return self._place_at[self._step_chunks(index)[0].body.start]

    def written_hit(self, place: int) -> dict | None:
        """:meth:`hit` of the step written at ``place`` (:meth:`every_step`), any branch's."""
        return self._hit(self._written[place][1])

    def _hit(self, notes: list[Chunk]) -> dict | None:
        hit = None
        for note in notes:
            if note.kind == b"NOTE":  # each checked, the last kept
                hit = self._decoded(note, check_note, self._body(note)["data"])
        return None if hit is None else {key: value for key, value in hit.items() if key != "step"}

    def has_lens(self, index: int) -> bool:
        """Whether step ``index`` has a recorded logit lens (no JSON read)."""
        return self._lens_chunk(self._step_chunks(index)[1]) is not None

    def written_lens(self, place: int) -> tuple | None:
        """:meth:`lens` of the step written at ``place`` (:meth:`every_step`), any branch's."""
        chunk = self._lens_chunk(self._written[place][1])
        return None if chunk is None else self._read_lens(chunk)[1]

    def has_written_lens(self, place: int) -> bool:
        """:meth:`has_lens` of the step written at ``place``."""
        return self._lens_chunk(self._written[place][1]) is not None

    @property
    def lens_steps(self) -> int:
        """How many steps of the live branch have a recorded logit lens (no JSON read)."""
        return sum(any(c.kind == b"LENS" for c in notes) for _, notes in self._steps)

    def lens_data(self, index: int) -> list | None:
        """Step ``index``'s ``"layers"`` exactly as ``--json --layers`` printed them; None when its
        lens was not recorded. A lens :meth:`lens` refuses is refused here, with the same TraceError."""
        chunk = self._lens_chunk(self._step_chunks(index)[1])
        return None if chunk is None else self._read_lens(chunk)[0]

    def lens(self, index: int) -> tuple | None:
        """Step ``index``'s logit lens as ``LayerLens`` records (no lens logits: see
        ``trace.lens_from_list``); None when it was not recorded."""
        chunk = self._lens_chunk(self._step_chunks(index)[1])
        return None if chunk is None else self._read_lens(chunk)[1]

    def _read_lens(self, chunk: Chunk) -> tuple[list, tuple]:
        """A ``LENS`` chunk's ``"layers"`` and the ``LayerLens`` records built from them: checked
        in one place, so ``--json --layers`` refuses the lens the Layers pane refuses (a word
        where a probability goes was printed by one and refused by the other)."""
        layers = self._body(chunk)["data"].get("layers")
        if not (isinstance(layers, list) and all(isinstance(layer, dict) for layer in layers)):
            raise self._damaged(chunk, "its layers are not a list of layers")
        return layers, self._decoded(chunk, lens_from_list, layers)

    @staticmethod
    def _lens_chunk(notes: list[Chunk]) -> Chunk | None:
        """A step's last ``LENS`` chunk among its ``notes``, if any (the newest, where a lens was
        written twice)."""
        return next((c for c in reversed(notes) if c.kind == b"LENS"), None)

    def step(self, index: int) -> StepRecord:
        """Step ``index`` as a record; its rows are views of the mapped file, to be read through
        ``mapped_rows.read_ahead`` (as the panes read them: only the bytes shown, and a file
        truncated since it opened is a TraceError there, not SIGBUS)."""
        return self._step_record(self._step_chunks(index)[0])

    def _step_record(self, chunk: Chunk) -> StepRecord:
        """A step chunk as a record, its rows mapped (:meth:`step`)."""
        _, record, rows = self._read_step(chunk)
        return replace(record, attention=rows.get("attention"), cross_attention=rows.get("cross_attention"))

    def _read_step(self, chunk: Chunk) -> tuple[dict, StepRecord, dict[str, AttentionRows]]:
        """A step chunk's JSON, the record built from it (no rows) and its rows, or the TraceError
        of a step that is not what lmscope writes.

        The one place a step is checked, whatever shows it: ``--json`` prints the JSON, the TUI
        and ``--headless`` show the record, and each refuses the same steps in the same words (a
        step with no stages was printed by ``--json`` and refused by the others). Building the
        record only to check it costs ``--json`` ~40 µs of CPU a demo T5 step (its loop over the
        steps, without ``--attention``, took 1.4-1.5 times as long): the price of never printing
        a step the other outputs refuse."""
        data, rows = self._load(chunk)  # the rows' layout is checked too, though --json may not print them
        if not STEP_KEYS <= data.keys():  # before decoding: the missing field named, not a KeyError
            raise self._damaged(chunk, f"it has no {sorted(STEP_KEYS - data.keys())[0]!r}")
        return data, self._decoded(chunk, lambda d: step_from_dict(check_step(d)), data), rows

    def rows(self, index: int) -> dict[str, AttentionRows]:
        """Every row of step ``index``, read in full (``--json --attention``): arrays of their own."""
        rows = self._load(self._step_chunks(index)[0])[1]
        return {name: replace(row, probs=read_ahead(row.probs)) for name, row in rows.items()}

    def _step_chunks(self, index: int) -> tuple[Chunk, list[Chunk]]:
        """Step ``index``'s chunk and its notes; a TraceError for a step the recording does not
        have (a negative index too: it would silently read from the end)."""
        if not is_index(index) or not 0 <= index < len(self._steps):
            steps = f"steps 0 to {len(self._steps) - 1}" if self._steps else "no steps"
            raise TraceError(f"{str(self.path)!r} has no step {index!r}: it holds {steps}")
        return self._steps[index]

    @property
    def has_branches(self) -> bool:
        """Whether a rewind or a force left steps that the branch live at the end does not hold."""
        return sum(chunk.kind == b"STEP" for chunk in self._chunks[self._session_at:]) > len(self._steps)

    def every_step(self):
        """Every recorded step in the order it was written, a rewound branch's too, and every
        branch resumed: ``(place, index, None)`` for step ``index`` of the live branch (its
        record is :meth:`step`'s), ``(place, None, record)`` for a step a rewind or a force left
        behind (its rows mapped, as :meth:`step`'s), where ``place`` counts the STEP chunks
        written before it; a :class:`Rewind` where a rewind set steps aside; a :class:`Resumed`
        where a branch became live again. The steps that re-ran a resumed branch's tokens are not
        given, nor the rewind before them: the branch's own steps stand for them."""
        live = {step.body.start: index for index, (step, _) in enumerate(self._steps)}
        for at, chunk in enumerate(self._chunks[self._session_at:], start=self._session_at):
            if at in self._resumes:
                yield self._resumes[at]
            if at in self._rewinds:
                yield Rewind(chunk.step)
            if chunk.kind != b"STEP" or chunk.body.start in self._reruns:
                continue
            place, index = self._place_at[chunk.body.start], live.get(chunk.body.start)
            yield (place, index, None) if index is not None else (place, None, self._step_record(chunk))

    def _live_steps(self) -> list[tuple[Chunk, list[Chunk]]]:
        """The steps of the branch that was live at the end: a rewind restarts the numbering
        (:func:`in_order` has checked every step number and note against the steps before it),
        and a resume (RSUM) puts the branch's own steps back in place of their re-run.

        A rewind writes a RWND chunk (since 2026-12-07; before, the next STEP's number was all
        that said it, and a rewind no step followed said nothing). A STEP chunk written twice
        reads as a rewind to it and the step made again, which it cannot be told from: a rewind
        and a step again without a force (greedy, or sampled with the generator put back)
        records a chunk that differs from the one it replaces only in ``elapsed_s``, a clock's
        reading, that nothing keeps from being equal. Either way the same steps show, once each;
        a NOTE or LENS between the two goes with the first, as a rewound record's do."""
        steps: list[tuple[Chunk, list[Chunk]]] = []
        written, first = self._written, 0  # a resumed step's notes stay with it
        for at, chunk in enumerate(self._chunks):
            if chunk.kind == b"PRMT":  # a restart: the steps before it are gone
                steps, first = [], len(written)
            elif chunk.kind == b"STEP":
                del steps[chunk.step:]
                steps.append((chunk, []))
                self._place_at[chunk.body.start] = len(written)
                written.append(steps[-1])
            elif chunk.kind in (b"NOTE", b"LENS"):
                steps[chunk.step][1].append(chunk)
            elif chunk.kind == b"RWND" and self._holds(chunk):
                del steps[chunk.step:]
                self._rewinds.add(at)
            elif chunk.kind == b"RSUM" and (resumed := self._resumed(at, written, first)) is not None:
                steps[resumed.step:] = [written[place] for place in resumed.places]
                self._resumes[at] = resumed
                before = at - len(resumed.places)
                self._reruns.update(chunk.body.start for chunk in self._chunks[before:at])
                if before - 1 in self._rewinds and self._chunks[before - 1].step == resumed.step:
                    self._rewinds.remove(before - 1)  # the resume's own rewind: it forks nothing
        return steps

    def _holds(self, chunk: Chunk) -> bool:
        """Whether a RWND chunk's JSON says the step its header says; one that does not is passed
        over, as an older lmscope passes every RWND."""
        try:
            self._body(chunk)
        except TraceError:
            return False
        return True

    def _resumed(self, at: int, written: list, first: int) -> Resumed | None:
        """The resume the RSUM chunk ``self._chunks[at]`` says, if it holds: the steps it names
        are numbered from its step on, written since the prompt before it (``first``: the place
        of the first STEP chunk after it), and the chunks right before it are their re-run (STEPs
        of the same numbers). One that does not hold is passed over, as an older lmscope does: the
        re-run steps then stand as the live ones, forced."""
        chunk = self._chunks[at]
        try:
            places = self._body(chunk)["data"].get("steps")  # its step is the header's (checked)
        except TraceError:
            return None
        if not isinstance(places, list) or not all(is_whole(place) for place in places):
            return None
        step, count = chunk.step, len(places)
        reruns = self._chunks[at - count:at] if count <= at else []
        if len(reruns) != count or not all(
                first <= place < len(written) and written[place][0].step == step + i
                and reruns[i].kind == b"STEP" and reruns[i].step == step + i for i, place in enumerate(places)):
            return None
        return Resumed(step, tuple(places))

    def _body(self, chunk: Chunk) -> dict:
        """A chunk's JSON part. Its CRC held, but a buggy or hostile writer computes CRCs too:
        anything lmscope does not write is a TraceError, not a KeyError further on."""
        text = self._text(chunk)  # outside the try: a TraceError is a ValueError
        try:
            body = json.loads(text)
        except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, nested too deep
            raise self._damaged(chunk, f"its JSON does not parse ({type(error).__name__})") from None
        if not (isinstance(body, dict) and isinstance(body.get("data"), dict) and isinstance(body.get("rows"), dict)):
            raise self._damaged(chunk, "its JSON is not a record")
        if chunk.kind in (b"STEP", b"NOTE", b"LENS", b"RSUM", b"RWND") and not (type(body["data"].get("step")) is int
                                                     and body["data"]["step"] == chunk.step):
            raise self._damaged(chunk, f"its header says step {chunk.step}, its JSON {body['data'].get('step')!r}")
        return body

    def _text(self, chunk: Chunk) -> bytes:
        """A chunk's JSON part: the first time, the bytes the scan read and checked (the worker
        that loads a replay's history read each step's with a ``pread`` of its own, which lets
        the GIL go: it then waited for the UI thread's switch interval at each step, and the
        first frame came 0.1 s later in ``bench_replay.py``); after that, read again and checked
        again (a trace written over in place since, its length kept, is a TraceError)."""
        text = self._texts.pop(chunk.body.start, None)
        if text is None:
            text = self._file.read(chunk.body.start, chunk.body.stop - chunk.body.start)
            if zlib.crc32(text) != chunk.crc:
                raise TraceError(f"{str(self.path)!r} was written over while it was open: the chunk at byte "
                                 f"{chunk.body.start - CHUNK_HEADER.size} no longer passes its checksum")
        return text

    def _rows_fit(self, chunk: Chunk, name: str, kind: str, shape: list[int], query_start: int) -> bool:
        """Whether rows ``[layer, head, query, key]`` are the ones the recorder writes for this
        chunk: the panes label queries and keys with the prompt's tokens and the steps'."""
        queries, keys = shape[2], shape[3]
        if min(shape) < 1:
            return False
        prompt, t5 = self._prompt_length, self.info.family == "t5"
        if chunk.kind == b"PRMT":
            return kind == ("encoder" if t5 else "self") and keys == prompt and query_start + queries == prompt
        if name == "cross_attention":
            return t5 and kind == "cross" and queries == 1 and keys == prompt and query_start == chunk.step
        if t5:
            return kind == "self" and queries == 1 and keys == chunk.step + 1 and query_start == chunk.step
        return kind == "self" and queries == 1 and keys == prompt + chunk.step and query_start == keys - 1

    def _damaged(self, chunk: Chunk, why: str) -> TraceError:
        what = f"step {chunk.step}'s chunk" if chunk.kind == b"STEP" else f"the {chunk.kind.decode()} chunk"
        return TraceError(f"{str(self.path)!r} is damaged: {what} at byte {chunk.body.start - CHUNK_HEADER.size} "
                          f"passes its checksum but is not what lmscope writes: {why}")

    def _decoded(self, chunk: Chunk, build, data):
        """``build(data)``, a record from a chunk's JSON; what lmscope never writes is a TraceError."""
        try:
            return build(data)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as error:
            raise self._damaged(chunk, f"{type(error).__name__}: {first_line(error)}") from None

    def _load(self, chunk: Chunk, body: dict | None = None) -> tuple[dict, dict[str, AttentionRows]]:
        body = self._body(chunk) if body is None else body
        rows = {}
        for name, spec in body["rows"].items():
            shape, offset = self._row_span(chunk, name, spec)
            start = chunk.rows_at + offset
            array = self._bytes[start:start + math.prod(shape) * self.rows_dtype.itemsize].view(self.rows_dtype)
            # float16 rows stay float16 and mapped: a pane converts only what it paints
            rows[name] = AttentionRows(spec["kind"], array.reshape(shape), spec["query_start"])
        return body["data"], rows

    def _row_span(self, chunk: Chunk, name: str, spec) -> tuple[list[int], int]:
        """``(shape, offset)`` of one row array, checked to lie on an 8-byte boundary inside the
        chunk's own rows part (never in the next chunk's bytes, never past the file's end)."""
        names = ("attention",) if chunk.kind == b"PRMT" else ROW_KINDS
        if not isinstance(spec, dict) or name not in names:
            raise self._damaged(chunk, f"it has rows named {name!r}")
        shape, offset = spec.get("shape"), spec.get("offset")
        if not (isinstance(shape, list) and len(shape) == 4 and all(is_whole(n) for n in shape) and is_whole(offset)
                and offset % 8 == 0 and isinstance(spec.get("kind"), str) and is_whole(spec.get("query_start"))):
            raise self._damaged(chunk, f"its {name} rows are described as {short_json(spec)}")
        if not self._rows_fit(chunk, name, spec["kind"], shape, spec["query_start"]):
            raise self._damaged(chunk, f"its {name} rows {shape} from query {spec['query_start']} do not fit "
                                       f"its tokens")
        if offset + math.prod(shape) * self.rows_dtype.itemsize > chunk.end - chunk.rows_at:
            raise self._damaged(chunk, f"its {name} rows {shape} at offset {offset} run past its "
                                       f"{chunk.end - chunk.rows_at} bytes of rows")
        return shape, offset


def _said(why: str) -> str:
    """Why a chunk is damaged (:func:`damage_at`), put after "damaged" in a sentence."""
    return f" ({why})" if why else ""
