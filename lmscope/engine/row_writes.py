"""How the row store writes a continue's rows: ``LMSCOPE_ROW_WRITES`` (no torch here: the CLI
checks it before the TUI takes the screen)."""

from __future__ import annotations

import os

from lmscope.engine.errors import UserError

ROW_WRITES_ENV = "LMSCOPE_ROW_WRITES"


def direct_writes_wanted() -> bool:
    """``LMSCOPE_ROW_WRITES``: ``direct`` (the default: large writes into pages not prepared go
    straight to the disk, ``engine/row_store.py``) or ``buffered`` (every write through the page
    cache: for a disk slower than the page cache takes a continue's rows)."""
    wanted = os.environ.get(ROW_WRITES_ENV, "direct").strip().lower() or "direct"
    if wanted not in ("direct", "buffered"):
        raise UserError(f"{ROW_WRITES_ENV} must be direct or buffered, not {wanted!r}")
    return wanted == "direct"
