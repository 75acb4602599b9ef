"""Breakpoint conditions: a small expression language over one step, parsed once, never ``eval``-ed.

    p < 0.3 and not flip
    token ~ "^ [A-Z]" or rank > 1
    (entropy >= 2.5 or margin < 0.05) and step > 3

Fields (see :data:`FIELDS`) compare with ``< <= > >= == !=``; ``~`` is a regular-expression
search on a string field; ``and``, ``or``, ``not`` and parentheses combine them; ``flip`` is a
condition by itself. Types are checked when the expression is parsed, so a condition that parses
cannot fail on a step.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from lmscope.engine.errors import UserError
from lmscope.engine.records import StepRecord

FIELDS = {
    "step": ("number", "0-based index of the step"),
    "id": ("number", "the chosen token's id"),
    "token": ("string", "the chosen token's text"),
    "text": ("string", "all generated text so far, this token included"),
    "p": ("number", "the chosen token's probability in the final distribution"),
    "margin": ("number", "best minus second-best probability, final distribution"),
    "entropy": ("number", "entropy in nats of the final distribution"),
    "rank": ("number", "the chosen token's rank in the raw logits (1 = their argmax)"),
    "flip": ("bool", "the chosen token is not the raw logits' argmax"),
    "kept": ("number", "finite scores after the last processor"),
}
"""Field name -> (type, meaning)."""

_COMPARE: dict[str, Callable[[object, object], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}
# Numbers in ASCII digits only, as every other number lmscope reads (``\d`` matches any script's).
_TOKEN = re.compile(r"""\s*(?:(?P<number>-?(?:[0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?))
                      |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
                      |(?P<op><=|>=|==|!=|<|>|~|\(|\))
                      |(?P<word>[A-Za-z_][A-Za-z0-9_]*))""", re.VERBOSE)


MAX_DEPTH = 50
"""How deeply parentheses and ``not`` may nest: each level is a few Python frames in the parser
(and a ``not`` one more when a step is tested), so thousands of levels would overflow the stack."""

_SHOWN_CHARS = 80
"""An expression longer than this is shortened in error messages (they stay one readable line)."""

_SPACE = re.compile(r"\s*")


class BreakpointError(UserError):
    """An expression that does not parse; the message is one line pointing at the column."""


@dataclass(frozen=True)
class Breakpoint:
    """A parsed condition.

    Attributes:
        expr: the text the user typed.
        fields: the fields it reads, in order of appearance.
    """

    expr: str
    fields: tuple[str, ...]
    _test: Callable[[Mapping[str, object]], bool]

    def holds(self, values: Mapping[str, object]) -> bool:
        """True when the condition holds for a step's ``values`` (see :func:`step_values`)."""
        return bool(self._test(values))


def parse(expr: str, top: int | None = None) -> Breakpoint:
    """Parse ``expr``; raise BreakpointError naming the column of the first problem.

    Args:
        expr: the condition.
        top: the candidates the session keeps per stage (``--top``), when known: with one,
            ``margin`` (best minus second-best) cannot be read, and is refused.
    """
    parser = _Parser(expr)
    kind, test = parser.expression()
    if parser.peek() is not None:
        parser.fail("expected `and`, `or` or the end")
    if kind != "bool":
        parser.fail("a condition is needed, such as `p < 0.3`", at=0)
    if top is not None and top < 2 and "margin" in parser.columns:
        parser.fail(f"`margin` needs the second-best candidate, and --top {top} keeps only the best: "
                    "pass --top 2 or more", at=parser.columns["margin"])
    return Breakpoint(expr, tuple(dict.fromkeys(parser.fields)), test)


def step_values(record: StepRecord, text: str) -> dict[str, object]:
    """The fields of one step.

    Args:
        record: the step.
        text: all generated text so far, this step's token included.
    """
    final, raw = record.stages[-1], record.stages[0]
    probs = [c.prob for c in final.top]
    p = record.final_prob
    p = 0.0 if p is None else p
    raw_ids = [c.token_id for c in raw.top]
    rank = record.raw_rank or (raw_ids.index(record.token_id) + 1 if record.token_id in raw_ids else len(raw_ids) + 1)
    return {
        "step": record.step, "id": record.token_id, "token": record.token, "text": text, "p": p,
        "margin": (probs[0] - probs[1]) if len(probs) > 1 else (probs[0] if probs else 0.0),
        "entropy": final.entropy, "rank": rank, "flip": bool(raw_ids) and raw_ids[0] != record.token_id,
        "kept": final.kept,
    }


def first_hit(numbered: Sequence[tuple[int, Breakpoint]], record: StepRecord,
              text: str) -> tuple[int, Breakpoint, dict[str, object]] | None:
    """``(number, breakpoint, values)`` of the first of the ``numbered`` breakpoints that holds at
    ``record`` (``text``: the generated text up to it; ``values``: :func:`step_values`), or None.
    ``--headless`` and the TUI's continue both stop at it."""
    if not numbered:
        return None
    values = step_values(record, text)
    return next(((number, breakpoint, values) for number, breakpoint in numbered if breakpoint.holds(values)), None)


def describe_hit(breakpoint: Breakpoint, values: Mapping[str, object]) -> dict[str, object]:
    """The values of the fields the breakpoint reads, for display and JSON."""
    return {field: values[field] for field in breakpoint.fields}


def hit_note(number: int, breakpoint: Breakpoint, values: Mapping[str, object]) -> dict:
    """A hit as a recording keeps it beside its step (a ``NOTE`` chunk), live from the TUI or
    ``--headless``: the expression, the values it read and the step, and its number."""
    return {"breakpoint": {"expr": breakpoint.expr, "values": describe_hit(breakpoint, values) | {"step": values["step"]}},
            "number": number}


def note_message(note: dict) -> str:
    """The status line (:func:`hit_message`) of a hit kept as :func:`hit_note` keeps it."""
    hit = note["breakpoint"]
    return hit_message(note["number"], parse(hit["expr"]), hit["values"])


def hit_message(number: int, breakpoint: Breakpoint, values: Mapping[str, object]) -> str:
    """One line for the status bar and ``--headless``: ``breakpoint 2 `p < 0.3`: p=0.21 at step 14``."""
    shown = ", ".join(f"{field}={_show(value)}" for field, value in describe_hit(breakpoint, values).items())
    return f"breakpoint {number} `{breakpoint.expr}`: {shown} at step {values['step']}"


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


class _Parser:
    """Recursive descent: or -> and -> not -> comparison -> operand."""

    def __init__(self, text: str):
        self.text, self.fields = text, []
        self.columns: dict[str, int] = {}
        """Each field read: the column where it is first read (0-based)."""
        self.shown = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS - 3] + "..."
        self.tokens = self._lex(text)
        self.index = 0
        self.depth = 0

    def _lex(self, text: str) -> list[tuple[str, str, int]]:
        tokens, position = [], 0
        while _SPACE.match(text, position).end() < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                column = _SPACE.match(text, position).end() + 1
                raise BreakpointError(f"bad breakpoint `{self.shown}`: unexpected character at column {column}")
            kind = match.lastgroup
            tokens.append((kind, match.group(kind), match.start(kind)))
            position = match.end()
        return tokens

    def peek(self):
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self):
        token = self.peek()
        self.index += 1
        return token

    def fail(self, message: str, at: int | None = None):
        token = self.peek()
        column = (at if at is not None else (token[2] if token else len(self.text))) + 1
        raise BreakpointError(f"bad breakpoint `{self.shown}`: {message} at column {column}")

    def deeper(self) -> None:
        """Enter one more level of parentheses or ``not`` (at the token just taken)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.index -= 1
            self.fail(f"too deeply nested (at most {MAX_DEPTH} levels of parentheses and `not`)")

    def _is(self, kind: str, value: str | None = None) -> bool:
        token = self.peek()
        return token is not None and token[0] == kind and (value is None or token[1] == value)

    def expression(self):
        return self._chain("or", self.conjunction, any)

    def conjunction(self):
        return self._chain("and", self.negation, all)

    def _chain(self, word: str, operand, combine):
        start = self.peek()
        kind, test = operand()
        tests = [test]
        while self._is("word", word):
            self.take()
            if kind != "bool":
                self.fail(f"`{word}` needs conditions on both sides", at=start[2] if start else 0)
            right_kind, right = operand()
            if right_kind != "bool":
                self.fail(f"`{word}` needs conditions on both sides")
            tests.append(right)
        if len(tests) == 1:
            return kind, test
        return "bool", lambda values: combine(t(values) for t in tests)

    def negation(self):
        if self._is("word", "not"):
            self.take()
            self.deeper()
            kind, test = self.negation()
            self.depth -= 1
            if kind != "bool":
                self.fail("`not` needs a condition")
            return "bool", lambda values: not test(values)
        return self.comparison()

    def comparison(self):
        start = self.peek()
        left_kind, left = self.operand()
        if not self._is("op") or self.peek()[1] in "()":
            return left_kind, left
        op = self.take()[1]
        right_start = self.peek()
        right_kind, right = self.operand()
        if op == "~":
            return self._regex(left_kind, left, right_kind, right, right_start)
        if left_kind != right_kind or (left_kind in ("string", "bool") and op not in ("==", "!=")):
            self.fail(f"cannot compare {left_kind} with {right_kind} using `{op}`", at=start[2])
        compare = _COMPARE[op]
        return "bool", lambda values: compare(left(values), right(values))

    def _regex(self, left_kind, left, right_kind, right, right_start):
        if left_kind != "string" or right_kind != "string" or right_start[0] != "string":
            self.fail("`~` takes a string field on the left and a quoted pattern on the right",
                      at=right_start[2] if right_start else None)
        try:
            pattern = re.compile(right({}))
        except re.error as error:
            self.fail(f"bad pattern ({error.msg})", at=right_start[2])
        except OverflowError as error:  # a repetition count past 2**32 - 2: `a{9999999999}`
            self.fail(f"bad pattern ({error})", at=right_start[2])
        except RecursionError:  # re's parser recurses once per nested group
            self.fail("bad pattern (its groups are nested too deeply)", at=right_start[2])
        return "bool", lambda values: pattern.search(left(values)) is not None

    def operand(self):
        token = self.take()
        if token is None:
            self.index -= 1
            self.fail("expected a value")
        kind, value, column = token
        if kind == "number":
            number = float(value)
            return "number", lambda values: number
        if kind == "string":
            text = _unquote(value)
            return "string", lambda values: text
        if kind == "op" and value == "(":
            self.deeper()
            result = self.expression()
            if not self._is("op", ")"):
                self.fail("expected `)`")
            self.take()
            self.depth -= 1
            return result
        if kind == "word" and value in ("true", "false"):
            constant = value == "true"
            return "bool", lambda values: constant
        if kind == "word" and value in FIELDS:
            self.fields.append(value)
            self.columns.setdefault(value, column)
            return FIELDS[value][0], lambda values: values[value]
        self.index -= 1
        if kind == "word":
            self.fail(f"unknown field `{value}` (fields: {', '.join(FIELDS)})")
        self.fail("expected a value")


def _unquote(quoted: str) -> str:
    """The string inside the quotes; only escaped quotes lose their backslash, so patterns keep ``\\d``."""
    return re.sub(r"\\([\"'])", r"\1", quoted[1:-1])
