"""What the standard streams can take: read by the CLI at start and by the ``--json`` printer,
with nothing heavy imported (``lmscope open`` must start fast)."""

from __future__ import annotations


def takes_utf8(stream) -> bool:
    """Whether ``stream`` encodes UTF-8 (one without an encoding, a test's StringIO, takes any
    text). Not under ``PYTHONIOENCODING=latin-1`` or a C locale with Python's UTF-8 mode off."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"
