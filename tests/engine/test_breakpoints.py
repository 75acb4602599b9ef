"""The breakpoint language: parsing, errors that point at the column, evaluation on step values."""

from __future__ import annotations

import pytest

from lmscope.engine.breakpoints import FIELDS, BreakpointError, hit_message, parse, step_values
from lmscope.testing import make_session

VALUES = dict(step=3, id=5, token=" Paris", text="The capital is Paris", p=0.21, margin=0.1, entropy=2.0, rank=2,
              flip=True, kept=100)


@pytest.mark.parametrize("expr, expected", [
    ("p < 0.3", True), ("p >= 0.3", False), ("p < 0.3 and not flip", False), ("not not flip", True),
    ("token ~ '^ P'", True), ("token ~ \"^P\"", False), ("text ~ 'capital is'", True),
    ("(entropy >= 2.5 or margin < 0.05) and step > 3", False), ("entropy == 2 or rank != 2", True),
    ("flip and kept > 99 and id == 5", True), ("token == ' Paris'", True), ("token != ' Paris'", False),
    ("step <= 3 and step >= 3", True), ("1 < 2", True), ("flip == true", True), ("p < 2e-1", False),
    ("margin < .2", True), ("step > -1", True), ("margin > -.5 and entropy >= -1e-3", True), ("-2 > -1", False),
])
def test_expressions_evaluate(expr, expected):
    assert parse(expr).holds(VALUES) is expected


def test_fields_read_are_listed_once_in_order():
    assert parse("p < 0.5 or (flip and p > 0.1) or token ~ 'a'").fields == ("p", "flip", "token")


@pytest.mark.parametrize("expr, message", [
    ("p <", "expected a value at column 4"),
    ("p < 'a'", "cannot compare number with string using `<` at column 1"),
    ("foo > 1", "unknown field `foo`"),
    ("p < 0.3 and", "expected a value at column 12"),
    ("token ~ 'a('", "bad pattern"),
    ("text ~ 'a{4294967296}'", "bad pattern (the repetition number is too large) at column 8"),
    ("p $ 3", "unexpected character at column 3"),
    ("p < \u0663", "unexpected character at column 5"),  # an Arabic-Indic 3: numbers are ASCII, as --step's
    ("step == \uff11", "unexpected character at column 9"),  # a fullwidth 1
    ("(p < 1", "expected `)` at column 7"),
    ("p < 1 )", "expected `and`, `or` or the end at column 7"),
    ("step", "a condition is needed"),
    ("p ~ 'x'", "`~` takes a string field"),
    ("token ~ text", "`~` takes a string field on the left and a quoted pattern"),
    ("not p", "`not` needs a condition"),
    ("", "expected a value at column 1"),
    ("__import__('os')", "unknown field `__import__`"),
])
def test_bad_expressions_are_one_line_pointing_at_the_problem(expr, message):
    with pytest.raises(BreakpointError) as error:
        parse(expr)
    text = str(error.value)
    assert message in text and "\n" not in text and text.startswith(f"bad breakpoint `{expr}`")


def test_step_values_of_a_record():
    session = make_session("llama", steps=4)
    record = session.steps[1]
    values = step_values(record, "text so far")
    assert set(values) == set(FIELDS)
    final, raw = record.stages[-1], record.stages[0]
    assert values["entropy"] == final.entropy and values["kept"] == final.kept and values["text"] == "text so far"
    assert values["margin"] == pytest.approx(final.top[0].prob - final.top[1].prob)
    assert values["flip"] == (raw.top[0].token_id != record.token_id)
    assert values["p"] == (record.chosen.prob if record.chosen else 0.0)


def test_hit_message_reads_like_the_status_bar():
    message = hit_message(2, parse("p < 0.3"), VALUES)
    assert message == "breakpoint 2 `p < 0.3`: p=0.21 at step 3"


def test_patterns_keep_their_backslashes_and_quotes_can_be_escaped():
    assert parse(r"text ~ '\d+'").holds(VALUES | {"text": "step 42"})
    assert not parse(r"text ~ '\d+'").holds(VALUES)
    assert parse(r"token == 'it\'s'").holds(VALUES | {"token": "it's"})


def test_a_pattern_nested_deeper_than_re_can_parse_is_a_bad_pattern():
    expr = "text ~ '" + "(" * 3000 + "a" + ")" * 3000 + "'"
    with pytest.raises(BreakpointError, match="bad pattern .its groups are nested too deeply. at column 8"):
        parse(expr)


def test_margin_is_refused_where_one_candidate_is_kept():
    """With --top 1 the final stage lists no second-best candidate, and `margin` read the best
    probability alone: `margin < 0.05` never held on a step whose margin was 0.01."""
    with pytest.raises(BreakpointError, match=r"`margin` needs the second-best .*--top 2 or more.* at column 13"):
        parse("p < 0.5 and margin < 0.05", top=1)
    assert parse("p < 0.5 and margin < 0.05", top=2).fields == ("p", "margin")
    assert parse("p < 0.5 and token ~ 'margin'", top=1).fields == ("p", "token")  # a string is no field
