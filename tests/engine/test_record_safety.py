"""--record loses nothing: a failed run leaves the file it was given as it was, a file that is not
a trace is never written over, and a write that fails is one line."""

from __future__ import annotations

import os

import pytest

from lmscope.cli import main
from lmscope.engine.errors import UserError
from lmscope.engine.trace_format import MAGIC, TraceError
from lmscope.engine.trace_reader import Trace
from lmscope.engine.trace_writer import TraceWriter
from lmscope.testing import make_session

PROMPT = "the quick brown fox"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmscope: error: ") and "Traceback" not in err, err
    return lines[0]


def short_trace(path, family: str = "llama") -> None:
    """A trace of a fake session's meta and prompt, as a session that has begun leaves it."""
    writer = TraceWriter(path)
    session = make_session(family, steps=1)
    writer.meta(session.info, {})
    writer.prompt(session.prompt)
    writer.close()


def leftovers(folder) -> list[str]:
    """Files a writer left beside its target (its new file, before it takes the target's place)."""
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_a_run_that_fails_after_the_file_is_opened_leaves_the_old_trace(tmp_path, tiny_llama_dir, capsys):
    old = tmp_path / "good.lmscope"
    assert main(["llama", "--model", str(tiny_llama_dir), "--prompt", PROMPT, "--json", "--max-new-tokens", "2",
                 "--record", str(old)]) == 0
    kept = old.read_bytes()
    capsys.readouterr()
    # a prompt longer than the model's 256 positions is refused once the tokenizer has read it:
    # after the trace was opened
    assert main(["llama", "--model", str(tiny_llama_dir), "--prompt", "word " * 300, "--json",
                 "--max-new-tokens", "2", "--record", str(old)]) == 2
    assert "positions" in one_error_line(capsys)
    assert old.read_bytes() == kept and leftovers(tmp_path) == []


def test_a_run_replaces_an_old_trace_once_it_has_begun(tmp_path, tiny_t5_dir, capsys):
    path = tmp_path / "t.lmscope"
    for tokens in ("2", "4"):
        assert main(["t5", "--model", str(tiny_t5_dir), "--prompt", PROMPT, "--json", "--max-new-tokens", tokens,
                     "--min-new-tokens", tokens, "--record", str(path)]) == 0
    assert len(Trace(path)) == 4 and leftovers(tmp_path) == []


@pytest.mark.parametrize("content", [b"PRECIOUS notes\n", b"ab"])
def test_a_file_that_is_not_a_trace_is_never_written_over(tmp_path, tiny_t5_dir, capsys, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    assert main(["t5", "--model", str(tiny_t5_dir), "--prompt", PROMPT, "--json", "--max-new-tokens", "2",
                 "--record", str(path)]) == 2
    assert "is not an lmscope trace" in one_error_line(capsys)
    assert path.read_bytes() == content and leftovers(tmp_path) == []


def test_an_empty_file_may_be_recorded_to(tmp_path, tiny_t5_dir, capsys):
    path = tmp_path / "made-by-mktemp"
    path.touch()
    assert main(["t5", "--model", str(tiny_t5_dir), "--prompt", PROMPT, "--json", "--max-new-tokens", "2",
                 "--record", str(path)]) == 0
    assert path.read_bytes().startswith(MAGIC)


def test_a_link_is_replaced_and_what_it_points_to_is_kept(tmp_path, tiny_t5_dir, capsys):
    """A link to a model's weights given by mistake: refused, the weights untouched; a link to a
    trace: the recording replaces the link, not the trace it points to."""
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (tmp_path / "weights-link").symlink_to(weights)
    assert main(["t5", "--model", str(tiny_t5_dir), "--prompt", PROMPT, "--json", "--max-new-tokens", "2",
                 "--record", str(tmp_path / "weights-link")]) == 2
    one_error_line(capsys)
    assert weights.read_bytes().startswith(b"\x08\x00")

    old = tmp_path / "old.lmscope"
    short_trace(old, "t5")
    kept = old.read_bytes()
    (tmp_path / "trace-link").symlink_to(old)
    assert main(["t5", "--model", str(tiny_t5_dir), "--prompt", PROMPT, "--json", "--max-new-tokens", "2",
                 "--record", str(tmp_path / "trace-link")]) == 0
    assert old.read_bytes() == kept
    assert not (tmp_path / "trace-link").is_symlink() and len(Trace(tmp_path / "trace-link")) == 2


@pytest.mark.parametrize("target, needle", [
    ("", "needs a file name"),
    ("{tmp}", "is a folder"),
    ("{tmp}/missing/x.lmscope", "No such file or directory"),
    ("/dev/null", "not a regular file"),
])
def test_paths_a_recording_cannot_go_to_are_one_line(tmp_path, capsys, target, needle):
    with pytest.raises(UserError, match=needle):
        TraceWriter(target.format(tmp=tmp_path))


def test_a_write_that_fails_is_one_line(tmp_path, monkeypatch):
    writer = TraceWriter(tmp_path / "full.lmscope")
    session = make_session("llama", steps=1)

    class FullDisk:
        def write(self, data):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(writer, "_file", FullDisk())
    with pytest.raises(UserError, match="cannot write the recording .*No space left on device"):
        writer.meta(session.info, {})
    writer.close()
    assert leftovers(tmp_path) == [] and not (tmp_path / "full.lmscope").exists()


def test_a_session_that_never_began_leaves_nothing_even_unclosed(tmp_path):
    """The TUI's writer is never closed when the model fails to load: its new file goes with it."""
    writer = TraceWriter(tmp_path / "never.lmscope")
    assert len(leftovers(tmp_path)) == 1
    del writer
    assert leftovers(tmp_path) == [] and not (tmp_path / "never.lmscope").exists()


def test_a_changed_first_chunk_is_called_damaged_and_a_cut_one_cut(tmp_path):
    path = tmp_path / "s.lmscope"
    short_trace(path)
    data = bytearray(path.read_bytes())
    data[50] ^= 0xFF  # inside the META chunk's JSON
    (tmp_path / "flipped.lmscope").write_bytes(bytes(data))
    with pytest.raises(TraceError, match="its first chunk is damaged"):
        Trace(tmp_path / "flipped.lmscope")
    (tmp_path / "cut.lmscope").write_bytes(path.read_bytes()[:60])
    with pytest.raises(TraceError, match="it was cut before the first chunk"):
        Trace(tmp_path / "cut.lmscope")
