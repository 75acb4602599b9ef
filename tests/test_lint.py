"""The code has no unused imports or names, undefined names or redefinitions (pyflakes).

A name left behind by a change (an import no longer used, a variable assigned and never read)
is the kind of slip review misses; this keeps it out of every tree CI runs."""

from __future__ import annotations

from pathlib import Path

from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("lmscope", "tests", "benchmarks", "scripts")


class Collected(Reporter):
    """pyflakes' reporter, keeping each message instead of printing it."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def unexpectedError(self, filename, message) -> None:
        self.messages.append(f"{filename}: {message}")

    def syntaxError(self, filename, message, lineno, offset, text) -> None:
        self.messages.append(f"{filename}:{lineno}: {message}")

    def flake(self, message) -> None:
        self.messages.append(str(message))


def test_pyflakes_finds_nothing():
    reporter, files = Collected(), [path for folder in CHECKED for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 100  # the folders were found
    for path in files:
        checkPath(str(path), reporter)
    assert reporter.messages == []


def test_pyflakes_reports_an_unused_import(tmp_path):
    path = tmp_path / "unused.py"
    path.write_text("import os\n")
    reporter = Collected()
    checkPath(str(path), reporter)
    assert len(reporter.messages) == 1 and "'os' imported but unused" in reporter.messages[0]
