"""`open --svg OUT`: an SVG is written over (a screenshot re-run), nothing else lmscope did not write
is: notes, a trace, a link to a model's weights, a pipe, the system's files."""

from __future__ import annotations

import os

import pytest

from lmscope.cli import main
from lmscope.engine.errors import UserError
from lmscope.testing import make_session, write_trace
from lmscope.tui.screenshot import check_svg_options, is_svg_start


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "att.lmscope"
    write_trace(path, make_session("llama", steps=3))
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmscope: error: ") and "Traceback" not in err, err
    return lines[0]


def test_notes_are_never_written_over(trace, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("PRECIOUS notes\n")
    assert main(["open", str(trace), "--svg", str(notes)]) == 2
    assert "it exists and is not an SVG" in one_error_line(capsys)
    assert notes.read_text() == "PRECIOUS notes\n"


def targets(tmp_path, trace) -> dict:
    """Each kind of path --svg must refuse, made in ``tmp_path``."""
    (tmp_path / "other.lmscope").write_bytes(trace.read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (tmp_path / "weights.svg").symlink_to(tmp_path / "model.safetensors")
    (tmp_path / "empty").touch()
    (tmp_path / "empty-link.svg").symlink_to(tmp_path / "empty")
    (tmp_path / "nowhere.svg").symlink_to(tmp_path / "missing")
    os.mkfifo(tmp_path / "pipe.svg")
    return {"a trace": ("other.lmscope", "it exists and is not an SVG"),
            "a link to weights": ("weights.svg", "is a link to"),
            "a link to an empty file": ("empty-link.svg", "is a link to"),
            "a link to nothing": ("nowhere.svg", "is a link to .*which does not exist"),
            "a pipe": ("pipe.svg", "it is not a regular file"),
            "too long": ("a" * 300 + ".svg", "File name too long")}


@pytest.mark.parametrize("case", ["a trace", "a link to weights", "a link to an empty file", "a link to nothing",
                                  "a pipe", "too long"])
def test_what_is_not_an_svg_is_refused(case, trace, tmp_path):
    name, message = targets(tmp_path, trace)[case]
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file() and
              not path.is_fifo()}
    with pytest.raises(UserError, match=message):
        check_svg_options(str(tmp_path / name), str(trace))
    assert before == {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file() and
                      not path.is_fifo()}


@pytest.mark.parametrize("path", ["/dev/stdout", "/dev/lmscope-test.svg", "/proc/lmscope-test.svg"])
def test_nothing_is_written_in_the_system_folders(path, trace):
    with pytest.raises(UserError, match=r"it is in /(dev|proc), the system's"):
        check_svg_options(path, str(trace))


def test_a_screenshot_re_run_writes_over_its_svg(trace, tmp_path, capsys):
    """The same command twice, then through a link to the SVG, and into an empty file."""
    shot = tmp_path / "shot.svg"
    (tmp_path / "shot-link.svg").symlink_to(shot)
    (tmp_path / "empty.svg").touch()
    for out, step in ((shot, "0"), (shot, "1"), (tmp_path / "shot-link.svg", "2"), (tmp_path / "empty.svg", "0")):
        assert main(["open", str(trace), "--svg", str(out), "--step", step]) == 0, capsys.readouterr().err
        assert is_svg_start(out.read_bytes()[:1024])
    assert (tmp_path / "shot-link.svg").is_symlink()


def test_an_svg_is_known_by_its_first_bytes():
    assert is_svg_start(b'<svg class="rich-terminal" viewBox="0 0 10 10">')
    assert is_svg_start(b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- drawn -->\n<svg xmlns="...">')
    assert not is_svg_start(b'<?xml version="1.0"?>\n<project>')  # XML, not an SVG
    assert not is_svg_start(b"notes about <svg> files")
