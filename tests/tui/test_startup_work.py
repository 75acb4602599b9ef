"""What the app does before its first frame: each piece is paid once (``lmscope open`` must show
its first frame within a second; benchmarks/bench_replay.py measures it)."""

from __future__ import annotations

from textual.widgets._footer import FooterKey

from lmscope.tui.widgets.footer import DebuggerFooter
from tui_harness import running


async def test_the_footer_composes_its_keys_once_at_start(monkeypatch):
    """The bindings change several times while the app starts; one recompose shows them all."""
    recomposes = []
    original = DebuggerFooter.recompose

    async def counted(self):
        recomposes.append(len(self.screen.active_bindings))
        await original(self)

    monkeypatch.setattr(DebuggerFooter, "recompose", counted)
    async with running(steps=3) as (app, pilot, engine):
        keys = list(app.screen.query(FooterKey))
        assert len(recomposes) == 1 and keys
        await pilot.press("n")  # busy flips twice: greyed in place, no recompose
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert len(recomposes) == 1 and list(app.screen.query(FooterKey)) == keys


async def test_footer_keys_start_with_the_footers_compact_state(monkeypatch):
    """Keys are built non-compact like the footer, so none restyles itself on mount (compact, then
    not); the command palette's key, which Textual leaves compact, keeps its default."""
    watched = []
    original = FooterKey._watch_compact

    def recorded(self, compact):
        watched.append((self.has_class("-command-palette"), compact))
        original(self, compact)

    monkeypatch.setattr(FooterKey, "_watch_compact", recorded)
    async with running(steps=2) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        palette = [key for key in footer.query(FooterKey) if key.has_class("-command-palette")]
        assert not footer.compact and len(palette) == 1 and palette[0].compact
        assert watched and all(not compact for is_palette, compact in watched if not is_palette)
