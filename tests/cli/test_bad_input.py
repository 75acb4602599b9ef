"""Every bad input is one `lmscope: error:` line and exit 2, before any model loads (issue 12)."""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from lmscope.cli import main
from lmscope.engine.errors import UserError


def fails(argv, capsys, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("lmscope: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[-1]
    return lines[-1]


@pytest.mark.parametrize("argv, needle", [
    (["t5", "--json", "--headless"], "--json and --headless"),
    (["t5", "--attention"], "--attention"),
    (["t5", "--attention", "--headless"], "--attention"),
    (["t5", "--chat", "--json"], "chat template"),
    (["t5", "--json", "--seed", str(2**64)], "--seed"),
    (["t5", "--json", "--seed", str(-(2**63) - 1)], "--seed"),
    (["t5", "--json", "--min-new-tokens", "5", "--max-new-tokens", "2"], "--min-new-tokens"),
    (["t5", "--json", "--device", "cuda:7"], "cuda:7"),
    (["t5", "--json", "--device", "tpu"], "unknown device"),
    (["t5", "--json", "--dtype", "float8"], "unknown dtype"),
    (["t5", "--json", "--prompt", "a\udcff b"], "UTF-8"),
    (["t5", "--json", "--do-sample", "--temperature", "1e-45"], "--temperature must be at least 1e-30"),
    (["t5", "--json", "--seed", "5"], "--seed only applies when sampling: add --do-sample"),
    (["t5", "--json", "--record-dtype", "float16"], "pass --record FILE too"),
    (["t5", "--json", "--record-dtype", "int8"], "--record-dtype must be one of float32, float16"),
    (["t5", "--json", "--model", ""], "--model is empty"),
    (["t5", "--json", "--break", "token ~ 'a\udcff'"], "--break is not valid UTF-8"),
    (["llama", "--json", "--device-map", "auto", "--offload-folder", ""], "--offload-folder is empty"),
    (["llama", "--json", "--device-map", "auto", "--offload-folder", "/proc/lmscope-offload"],
     "--offload-folder '/proc/lmscope-offload' cannot be made in '/proc'"),
    # a folder that is there and takes no files (a read-only mount, another user's): no weight has loaded yet
    (["llama", "--json", "--device-map", "auto", "--offload-folder", "/proc"],
     "--offload-folder '/proc' cannot be written"),
])
def test_flag_errors(argv, needle, capsys):
    fails(argv, capsys, needle)


@pytest.mark.parametrize("device", ["cuda:01", "cuda:\u0661", "cuda:\u00b9", "cuda:\uff11", "cuda:+1"])
def test_a_cuda_index_torch_cannot_read(device, monkeypatch, capsys):
    """On a machine with GPUs (faked here) these passed the device check: ``isdigit()`` takes
    '01', Arabic-Indic and superscript digits. int('\u00b9') then failed (exit 1), and torch
    refuses the others as "Invalid device string" once the model loads (exit 1)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    fails(["t5", "--json", "--device", device], capsys, f"unknown device {device!r}", "cuda:N")


@pytest.mark.parametrize("flag", ["--temperature", "--top-p", "--min-p", "--typical-p", "--repetition-penalty"])
@pytest.mark.parametrize("value", ["nan", "NaN", "-nan"])
def test_a_nan_setting_says_it_is_no_number(flag, value, capsys):
    """Python's float reads 'nan': the range checks refused it as "must be > 0", which names no
    mistake the user made."""
    fails(["t5", "--json", "--do-sample", flag, value], capsys, f"{flag} must be a number, not nan")


@pytest.mark.parametrize("flag, value, needle", [
    ("--temperature", "inf", "--temperature must be in [1e-30, 3.4e+38]"),
    ("--temperature", "1e400", "--temperature must be in [1e-30, 3.4e+38]"),  # read as inf
    ("--temperature", "-inf", "--temperature must be > 0"),
    ("--top-p", "inf", "--top-p must be in (0, 1]"),
    ("--top-p", "-inf", "--top-p must be in (0, 1]"),
    ("--min-p", "inf", "--min-p must be in [0, 1]"),
    ("--typical-p", "infinity", "--typical-p must be in (0, 1]"),
    ("--repetition-penalty", "inf", "--repetition-penalty must be in [1e-30, 1e+30]"),
])
def test_an_infinite_setting_is_refused_by_its_range(flag, value, needle, capsys):
    fails(["t5", "--json", "--do-sample", flag, value], capsys, needle)


def test_invalid_utf8_argv_in_a_real_process(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.getcwd())
    result = subprocess.run([sys.executable, "-m", "lmscope", "t5", "--json", "--prompt", b"a\xff b"],
                            capture_output=True, env=env)
    assert result.returncode == 2 and result.stderr.decode().startswith("lmscope: error: the prompt is not valid UTF-8")


def test_model_folder_errors(tmp_path, tiny_t5_dir, tiny_llama_dir, capsys):
    fails(["t5", "--json", "--model", str(tmp_path / "missing")], capsys, "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(["t5", "--json", "--model", str(empty)], capsys, "is empty")
    (empty / "README").write_text("x")
    fails(["t5", "--json", "--model", str(empty)], capsys, "no config.json")
    garbage = tmp_path / "garbage"
    shutil.copytree(tiny_llama_dir, garbage)
    (garbage / "config.json").write_text("{not json")
    fails(["llama", "--json", "--model", str(garbage)], capsys, "not valid JSON")
    (garbage / "config.json").write_text(json.dumps({"model_type": "vit"}))
    fails(["llama", "--json", "--model", str(garbage)], capsys, "'vit' is not supported")
    fails(["t5", "--json", "--model", str(tiny_llama_dir)], capsys, "run `lmscope llama`")
    fails(["llama", "--json", "--model", str(tiny_t5_dir)], capsys, "run `lmscope t5`")


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"garbage that is no safetensors"])
def test_damaged_weights(tmp_path, tiny_llama_dir, content, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_llama_dir, damaged)
    for weights in damaged.glob("*.safetensors"):
        weights.write_bytes(content)
    fails(["llama", "--json", "--model", str(damaged), "--prompt", "hi"], capsys, "cannot load model")


def test_unwritable_cache(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("LMSCOPE_CACHE", str(blocker / "cache"))
    fails(["llama", "--json"], capsys, "not writable", "LMSCOPE_CACHE")
    fails(["fetch"], capsys, "not writable")


def test_garbage_gguf(tmp_path, monkeypatch, capsys):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not a gguf at all")
    monkeypatch.setenv("LMSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LMSCOPE_SMOLLM2_GGUF", str(gguf))
    code = main(["llama", "--json"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err  # the error alone: no progress line before it
    assert "is not a GGUF file" in err and "LMSCOPE_SMOLLM2_GGUF" in err


def test_damaged_gguf(tmp_path, monkeypatch, capsys):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))  # the magic, then a header no reader takes
    monkeypatch.setenv("LMSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LMSCOPE_SMOLLM2_GGUF", str(gguf))
    code = main(["llama", "--json"])
    err = capsys.readouterr().err
    # the error alone: before, "using" and "dequantising" came first, for work that never began
    assert code == 2 and err.count("\n") == 1, err
    assert "is GGUF version 0, which transformers does not read" in err and "LMSCOPE_SMOLLM2_GGUF" in err
    gguf.write_bytes(struct.pack("<4sIQQ", b"GGUF", 3, 1, 1) + bytes(60))  # a header, then nothing usable
    fails(["llama", "--json"], capsys, "cannot be converted", "LMSCOPE_SMOLLM2_GGUF")


def test_prompt_longer_than_the_model_reads(tiny_llama_dir, capsys):
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    prompt = " ".join(["the"] * (config["max_position_embeddings"] + 8))
    fails(["llama", "--json", "--model", str(tiny_llama_dir), "--prompt", prompt], capsys, "positions")


def test_a_prompt_that_fits_only_without_its_chat_template_is_refused(tiny_llama_dir, tmp_path, capsys):
    """The positions are counted as the model reads the prompt: with --chat, in the template."""
    folder = tmp_path / "chat-llama"
    shutil.copytree(tiny_llama_dir, folder)
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    wrapper = " the" * 40  # the template adds 40 tokens around the message
    tokenizer_config["chat_template"] = "{% for m in messages %}" + wrapper + " {{ m['content'] }}{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    prompt = " ".join(["the"] * 200)  # 201 ids (with <s>) and 32 new tokens fit the 256 positions; the 240 of the template do not
    argv = ["llama", "--json", "--model", str(folder), "--prompt", prompt, "--max-new-tokens", "32"]
    assert main([*argv, "--min-new-tokens", "1", "--max-new-tokens", "1"]) == 0
    capsys.readouterr()
    fails([*argv, "--chat"], capsys, "positions", "the prompt is 240 tokens")


def test_tui_load_failure_is_one_line_and_exit_2(monkeypatch, capsys, terminal):
    """When loading fails inside the TUI, the app returns the error and the CLI reports it."""
    error = UserError("cannot load model 'x': broken")

    class App:
        def run(self):
            return error

    monkeypatch.setattr("lmscope.engine.session.model_source", lambda options: "x")
    monkeypatch.setattr("lmscope.tui.app.make_app", lambda factory, **options: App())
    assert fails(["t5"], capsys) == "lmscope: error: cannot load model 'x': broken"


def test_a_bad_row_writes_setting_fails_before_the_tui_is_made(monkeypatch, capsys):
    monkeypatch.setenv("LMSCOPE_ROW_WRITES", "sometimes")

    def no_app(*args, **kwargs):
        raise AssertionError("the TUI was made before the setting was checked")

    monkeypatch.setattr("lmscope.tui.app.make_app", no_app)
    fails(["t5"], capsys, "LMSCOPE_ROW_WRITES must be direct or buffered, not 'sometimes'")
    fails(["t5", "--json"], capsys, "LMSCOPE_ROW_WRITES")


def test_a_hub_id_that_cannot_be_had_offline_says_why(monkeypatch, capsys):
    """Offline, a hub id loads only from the hub's cache; an id like ``models/t5`` may have been
    meant as a folder, and the line says there is none."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fails(["t5", "--json", "--model", "no-such-org/no-such-t5"], capsys,
          "HF_HUB_OFFLINE is set", "no folder 'no-such-org/no-such-t5' here either")


ESC_NAME = "ab\x1b[31mred"
"""A name with a terminal escape in it: printed raw, it turns the rest of the terminal red."""


def test_a_terminal_escape_quoted_by_a_library_is_escaped_once(monkeypatch, capsys):
    """huggingface_hub quotes the repo id as it was given, lmscope's own parts with repr: the whole
    line is escaped where it is printed, and what repr escaped is not escaped twice."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = fails(["llama", "--json", "--model", ESC_NAME], capsys, "cannot load model")
    assert "\x1b" not in line and "\\\\x1b" not in line
    assert line.count("ab\\x1b[31mred") == 3  # lmscope's two quotes and huggingface_hub's one


def test_terminal_escapes_in_open_errors_and_warnings_are_escaped(tmp_path, capsys):
    """A trace path is quoted with repr in `open`'s errors and its warning lines: escaped once."""
    from lmscope.testing import make_session, write_trace

    path = tmp_path / f"{ESC_NAME}.lmscope"
    line = fails(["open", str(path), "--json"], capsys, "ab\\x1b[31mred.lmscope' does not exist")
    assert "\x1b" not in line and "\\\\x1b" not in line
    write_trace(path, make_session("llama", steps=3))
    path.write_bytes(path.read_bytes()[:-10])  # the last step cut short: a warning names the file
    assert main(["open", str(path), "--json"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("lmscope: warning: '") and "ab\\x1b[31mred.lmscope': the last " in err and "\x1b" not in err
    write_trace(path, make_session("llama", steps=3), lens_steps=(1,))  # a lens for 1 step of 3: a warning
    assert main(["open", str(path), "--json", "--layers"]) == 0
    err = capsys.readouterr().err
    assert "ab\\x1b[31mred.lmscope': the logit lens was recorded for 1 of 3" in err and "\x1b" not in err
    assert "\\\\x1b" not in err


@pytest.mark.parametrize("text, shown", [
    ("a\x1b[2Jb", "a\\x1b[2Jb"), ("c1 \x9b csi", "c1 \\x9b csi"), ("del\x7f", "del\\x7f"), ("tab\tx", "tab\\tx"),
    ("lone \udcff", "lone \\udcff"), ("bidi \u202e", "bidi \\u202e"),
    ("'ab\\x1b' escaped by repr", "'ab\\x1b' escaped by repr"), ("Tür 東京 👍", "Tür 東京 👍"),
])
def test_terminal_safe_escapes_what_a_terminal_would_act_on(text, shown):
    from lmscope.streams import terminal_safe

    assert terminal_safe(text) == shown


def _open_target(tmp_path, kind: str) -> str:
    """A path ``lmscope open`` refuses, of ``kind``."""
    if kind.startswith("/"):
        return kind
    if kind == "folder":
        return str(tmp_path)
    path = tmp_path / kind
    if kind != "my run.lmscope ":  # missing; the others are files
        path.write_text("" if kind == "empty.lmscope" else "notes " * 20)
    return str(path)


@pytest.mark.parametrize("kind, what", [
    ("my run.lmscope ", "does not exist"),  # unquoted, its trailing space was invisible
    ("folder", "is a folder, not an lmscope trace"),
    ("empty.lmscope", "is empty"),
    ("notes.txt", "is not an lmscope trace"),
    ("/dev/null", "is not a regular file"),
    ("/proc/version", "is in /proc"),
])
def test_open_quotes_the_path_in_its_errors(kind, what, tmp_path, capsys):
    """As --record's and --svg's lines do (``{path!r}``): a name with spaces or a trailing space reads whole."""
    path = _open_target(tmp_path, kind)
    assert fails(["open", path, "--json"], capsys).startswith(f"lmscope: error: {path!r} {what}")
