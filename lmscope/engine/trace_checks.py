"""What a trace's JSON must hold to be shown: the checks a chunk passes after its CRC, since a
buggy or hostile writer computes CRCs too. Each refuses with a ValueError naming the field;
:class:`~lmscope.engine.trace_reader.Trace` says which chunk."""

from __future__ import annotations

import json

from lmscope.engine.errors import UserError, first_line
from lmscope.engine.records import SessionInfo


def check_step(data: dict) -> dict:
    """``data`` if its fields are of the types ``--json`` prints, else a ValueError that names
    the first that is not: panes and the table format them without asking (a string where a
    probability goes, no stage at all, raised deep in a pane before). The stages, tensors and
    cache are made of the right types as they are built (``trace.step_from_dict``)."""
    chosen = data["chosen"]
    _need(data, ("step", "token_id"), _WHOLE)
    _need(data, ("token",), str)
    _need(data, ("entropy", "elapsed_s"), _NUMBER)
    _need(data, ("finished",), bool)
    _need(data, ("finish_reason",), (str, type(None)))
    _need(chosen, ("by",), str)
    _need(chosen, ("prob",), (*_NUMBER, type(None)))
    _need(chosen, ("raw_rank",), (*_WHOLE, type(None)))
    if not isinstance(data["stages"], list) or not data["stages"]:
        raise ValueError(f"stages is {short_json(data['stages'])}")
    _check_parts(data)
    return data


def check_prompt(data: dict) -> dict:
    """``data`` if its fields are of the types ``prompt_to_dict`` writes, else a ValueError."""
    _need(data, ("family", "prompt"), str)
    _need(data, ("elapsed_s",), _NUMBER)
    _need(data, ("decoder_start_id",), (*_WHOLE, type(None)))
    _need(data, ("decoder_start_token",), (str, type(None)))
    _check_parts(data)
    return data


def _check_parts(data: dict) -> None:
    """What a step and a prompt share that is not made of the right type as it is built."""
    for tensor in data["tensors"]:
        _need_all(tensor["preview"], _NUMBER, "a tensor's preview")


def check_note(data: dict) -> dict:
    """``data`` if it is a breakpoint hit as ``TraceWriter.note`` writes it, else a ValueError: a
    note's fields replace the step's in ``--json``, and ``--headless`` parses its breakpoint."""
    from lmscope.engine.breakpoints import parse

    hit = data.get("breakpoint")
    if set(data) != {"step", "breakpoint", "number"} or type(data["number"]) is not int or data["number"] < 1 \
            or not isinstance(hit, dict) or type(hit.get("expr")) is not str or not isinstance(hit.get("values"), dict):
        raise ValueError(f"it is not a breakpoint hit: {short_json(data)}")
    try:
        fields = parse(hit["expr"]).fields
    except UserError as error:
        raise ValueError(first_line(error)) from None
    if not {"step", *fields} <= hit["values"].keys():
        raise ValueError(f"its values {short_json(hit['values'])} do not hold what `{hit['expr']}` reads")
    return data


_WHOLE, _NUMBER = (int,), (int, float)
"""JSON's whole numbers, and its numbers (a bool is neither, though Python's bool is an int)."""


def _need(data: dict, names: tuple[str, ...], kinds) -> None:
    """Each of ``names`` in ``data`` is of ``kinds`` (a type, or a tuple; :data:`_WHOLE`: a whole
    number >= 0), else a ValueError naming it."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    for name in names:
        value = data[name]
        if not (is_whole(value) if kinds is _WHOLE else type(value) in kinds):
            raise ValueError(f"{name} is {short_json(value)}")


def _need_all(values, kinds: tuple, name: str) -> None:
    if not isinstance(values, list) or not all(type(value) in kinds for value in values):
        raise ValueError(f"{name} is {short_json(values)}")


STEP_KEYS = frozenset(("step", "token_id", "token", "chosen", "entropy", "stages", "finished", "finish_reason",
                       "cache", "tensors", "elapsed_s"))
"""What every ``--json`` line of a step has (``trace.step_to_dict``)."""


def is_whole(value) -> bool:
    """A JSON whole number >= 0 (not a bool, not a float)."""
    return type(value) is int and value >= 0


def short_json(value) -> str:
    """``value`` as JSON, cut to 80 characters: a field an error quotes in its one line."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


_INFO_TYPES = {"model": str, "family": str, "model_type": str, "device": str, "dtype": str, "layers": int,
               "query_heads": int, "kv_heads": int, "max_new_tokens": int, "placement": str}


def info_from_dict(data: dict) -> SessionInfo:
    """The session info of a META chunk; a field of the wrong type is a ValueError (panes format
    them without asking), a missing or unknown one a TypeError."""
    data = dict(data)
    data["settings"] = tuple(tuple(pair) for pair in data.get("settings", ()))
    wrong = [name for name, kind in _INFO_TYPES.items() if name in data and type(data[name]) is not kind]
    wrong += [name for name in ("layers", "query_heads", "kv_heads", "max_new_tokens") if name in data
              and name not in wrong and data[name] < 0]
    if data.get("family") not in (None, "llama", "t5"):
        wrong.append("family")
    if not all(len(pair) == 2 and all(type(text) is str for text in pair) for pair in data["settings"]):
        wrong.append("settings")
    if wrong:
        raise ValueError(f"its session info has {wrong[0]} = {short_json(data[wrong[0]])}")
    return SessionInfo(**data)
