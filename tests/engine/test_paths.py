"""Paths the user gives (`--record`, `open FILE`, `--model`): whatever the OS says of them is one
line and exit code 2, and a path where lmscope would lose what it did not write is refused."""

from __future__ import annotations

import os

import pytest

from lmscope.cli import main
from lmscope.engine.errors import UserError
from lmscope.engine.trace_format import MAGIC, TraceError
from lmscope.engine.trace_reader import Trace
from lmscope.engine.trace_writer import TraceWriter, check_record_path
from lmscope.testing import make_session, write_trace

LONG_NAME = "a" * 300
"""Longer than any file name a Linux file system takes (255 bytes)."""


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmscope: error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_link_to_an_empty_file_is_not_recorded_to(tmp_path):
    """`--record /dev/stdout > out`: the link leads to an empty file, and the recording replaced
    the system's link. A link is written over only when it leads to a trace."""
    out = tmp_path / "out"
    out.touch()
    (tmp_path / "stdout").symlink_to(out)
    with pytest.raises(UserError, match="is a link to .*which is not an lmscope trace"):
        TraceWriter(tmp_path / "stdout")
    assert (tmp_path / "stdout").is_symlink() and out.read_bytes() == b""
    assert sorted(os.listdir(tmp_path)) == ["out", "stdout"]  # no new file left beside it


@pytest.mark.parametrize("path", ["/dev/lmscope-test.lmscope", "/proc/lmscope-test.lmscope", "/dev/stdout"])
def test_nothing_is_recorded_in_the_system_folders(path):
    with pytest.raises(UserError, match=r"it is in /(dev|proc), the system's"):
        check_record_path(path)
    assert not os.path.exists("/dev/lmscope-test.lmscope")


def test_a_link_into_the_system_folders_is_refused(tmp_path):
    (tmp_path / "null.lmscope").symlink_to("/dev/null")
    with pytest.raises(UserError, match="cannot record to"):
        check_record_path(tmp_path / "null.lmscope")


def test_a_link_into_the_system_folders_is_said_to_lead_there(tmp_path, capsys):
    """The link is in tmp_path: "it is in /dev" was not true of it."""
    write_trace(tmp_path / "t.lmscope", make_session("llama", steps=1))
    (tmp_path / "null.lmscope").symlink_to("/dev/null")
    (tmp_path / "null.svg").symlink_to("/dev/null")
    for argv in (["t5", "--json", "--max-new-tokens", "2", "--record", str(tmp_path / "null.lmscope")],
                 ["open", str(tmp_path / "t.lmscope"), "--svg", str(tmp_path / "null.svg")]):
        assert main(argv) == 2
        line = one_error_line(capsys)
        assert "it leads into /dev, the system's" in line and "is in" not in line


def test_what_may_still_be_recorded_to(tmp_path):
    """A new file, an empty one (mktemp's), a trace and a link to a trace."""
    (tmp_path / "empty").touch()
    write_trace(tmp_path / "old.lmscope", make_session("llama", steps=1))
    (tmp_path / "link.lmscope").symlink_to(tmp_path / "old.lmscope")
    for name in ("new.lmscope", "empty", "old.lmscope", "link.lmscope"):
        check_record_path(tmp_path / name)
    assert (tmp_path / "old.lmscope").read_bytes().startswith(MAGIC)


def test_a_dangling_link_is_named_one(tmp_path, capsys):
    """A link that leads nowhere was called a link to something "not an lmscope trace" (or "not
    an SVG"); it is still refused, and left as it was."""
    write_trace(tmp_path / "t.lmscope", make_session("llama", steps=1))
    (tmp_path / "run.lmscope").symlink_to(tmp_path / "gone")
    (tmp_path / "shot.svg").symlink_to(tmp_path / "gone.svg")
    for argv in (["t5", "--json", "--max-new-tokens", "2", "--record", str(tmp_path / "run.lmscope")],
                 ["open", str(tmp_path / "t.lmscope"), "--svg", str(tmp_path / "shot.svg")]):
        assert main(argv) == 2
        line = one_error_line(capsys)
        assert f"link to {str(tmp_path / 'gone')!r}" in line or f"link to {str(tmp_path / 'gone.svg')!r}" in line
        assert "which does not exist (a dangling link" in line and "which is not" not in line
    assert sorted(os.listdir(tmp_path)) == ["run.lmscope", "shot.svg", "t.lmscope"]
    assert not (tmp_path / "run.lmscope").exists() and not (tmp_path / "shot.svg").exists()  # still dangling


def test_a_record_name_too_long_is_one_line(tmp_path, capsys):
    assert main(["t5", "--json", "--record", str(tmp_path / LONG_NAME)]) == 2
    assert "File name too long" in one_error_line(capsys)


def test_a_pipe_is_refused_before_it_is_opened(tmp_path, capsys):
    """Opening a pipe waits for a writer: `lmscope open FIFO` hung. The test holds the pipe open
    for writing itself, so that an open that does not look first fails here instead of hanging."""
    fifo = tmp_path / "ff"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # Linux: a pipe opened both ways never blocks
    try:
        with pytest.raises(TraceError, match="is not a regular file"):
            Trace(fifo)
        assert main(["open", str(fifo), "--json"]) == 2
        assert "is not a regular file" in one_error_line(capsys)
    finally:
        os.close(writer)


@pytest.mark.parametrize("extra", [[], ["--json"], ["--headless"], ["--svg", "shot.svg"]])
def test_an_empty_trace_path_is_named_empty(extra, tmp_path, monkeypatch, capsys):
    """`lmscope open ""` said ". is a folder": Path("") is the current folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TraceError, match="empty path"):
        Trace("")
    assert main(["open", "", *extra]) == 2
    line = one_error_line(capsys)
    assert "given as an empty path" in line and "folder" not in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["/proc/self/status", "/proc/self/cmdline", "link"])
def test_the_kernels_files_are_not_traces_and_not_empty(name, tmp_path, capsys):
    """/proc/self/status reads as text but its size is 0: it was called "empty"."""
    path = tmp_path / "status.lmscope" if name == "link" else name
    if name == "link":
        path.symlink_to("/proc/self/status")
    with pytest.raises(TraceError, match=f"{'leads into' if name == 'link' else 'is in'} /proc, where"):
        Trace(path)
    assert main(["open", str(path), "--json"]) == 2
    line = one_error_line(capsys)
    assert "not an lmscope trace" in line and "empty" not in line


def open_cases(tmp_path) -> dict:
    (tmp_path / "notes.txt").write_text("notes\n")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return {"in a file": (tmp_path / "notes.txt" / "x", "Not a directory"),
            "a link loop": (tmp_path / "loop", "Too many levels of symbolic links"),
            "too long": (tmp_path / LONG_NAME, "File name too long")}


@pytest.mark.parametrize("case", ["in a file", "a link loop", "too long"])
def test_a_trace_the_os_cannot_open_is_one_line_with_its_reason(case, tmp_path, capsys):
    path, reason = open_cases(tmp_path)[case]
    for extra in (["--json"], ["--headless"], ["--svg", str(tmp_path / "shot.svg")]):
        assert main(["open", str(path), *extra]) == 2
        line = one_error_line(capsys)
        assert str(path) in line and reason in line


@pytest.mark.parametrize("case", ["a link loop", "too long"])
def test_a_model_path_the_os_cannot_look_up_is_one_line(case, tmp_path, capsys):
    path, reason = open_cases(tmp_path)[case]
    assert main(["t5", "--json", "--model", str(path)]) == 2
    assert reason in one_error_line(capsys)
    assert main(["t5", "--json", "--model", LONG_NAME]) == 2  # not a path by its look: still looked up
    assert "File name too long" in one_error_line(capsys)


def test_a_hub_id_beside_a_file_of_its_owners_name_is_still_a_hub_id(tmp_path, monkeypatch):
    from lmscope.engine.checks import _looks_local

    monkeypatch.chdir(tmp_path)
    (tmp_path / "HuggingFaceTB").write_text("")
    assert not _looks_local("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert _looks_local(LONG_NAME)
