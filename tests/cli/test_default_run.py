"""`lmscope llama` with no flags shows a real answer (issue 12 item 2)."""

from __future__ import annotations

import json

import pytest

from lmscope.cli import main
from lmscope.engine import defaults
from lmscope.engine.session import DEFAULT_PROMPTS, SessionOptions, uses_chat


class _Tok:
    def __init__(self, template):
        self.chat_template = template


def test_default_prompt_uses_the_chat_template_only_when_there_is_one():
    default = SessionOptions(family="llama", prompt=DEFAULT_PROMPTS["llama"])
    own = SessionOptions(family="llama", prompt="Once upon a time")
    assert uses_chat(default, _Tok("{{ messages }}"))
    assert not uses_chat(default, _Tok(None))
    assert not uses_chat(own, _Tok("{{ messages }}"))
    assert uses_chat(SessionOptions(family="llama", prompt="x", chat=True), _Tok(None))


@pytest.mark.integration
def test_no_flag_llama_answers_paris(capsys):
    if not defaults.is_complete(defaults.default_llama_dir()):
        pytest.skip("the default Llama is not prepared: run `lmscope fetch`")
    code = main(["llama", "--json", "--device", "cpu"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(lines) > 1
    assert "Paris" in "".join(line["token"] for line in lines)
