"""--json lines carry no character a terminal would act on: json.dumps escapes C0 controls only."""

from __future__ import annotations

import io
import json

import pytest

from lmscope.headless import json_line


@pytest.mark.parametrize("token", ["\x9b31m", "a\u202eb", "\x7f", "x\u2028y", "\U000e0041", "\ud800", "\x1b[2J"])
def test_a_token_that_is_not_printable_is_escaped_in_the_line(token):
    """C1 (CSI), a bidi override, DEL, a line separator, a tag character beyond the BMP, a lone
    surrogate, ESC: each a ``\\u`` escape, so the line is printable and reads back the same."""
    for out in (io.StringIO(), io.TextIOWrapper(io.BytesIO(), encoding="latin-1")):
        line = json_line({"step": 0, "token": token, "top": [{"token": token}]}, out)
        assert line.isprintable(), line
        assert json.loads(line) == {"step": 0, "token": token, "top": [{"token": token}]}


def test_printable_text_is_written_as_it_is():
    """Where the stream takes UTF-8, a printable token (accents, CJK, an emoji) is as it was."""
    data = {"token": " Tür 東京 ⏎ 🙂", "p": 0.5}
    assert json_line(data, io.StringIO()) == json.dumps(data, ensure_ascii=False)
