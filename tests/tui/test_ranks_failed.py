"""Under tensor parallel a failed rank leaves the ranks out of lockstep: the TUI exits with the
error (the command line prints it as one line, exit 1) instead of showing it and going on."""

from __future__ import annotations

import asyncio

from lmscope.engine.distributed import RanksFailed
from lmscope.testing import FakeEngine, engine_factory, make_session
from lmscope.tui.app import make_app


class FailingEngine(FakeEngine):
    def step(self, *args, **kwargs):
        if self.step_calls >= 2:
            self.step_calls += 1
            raise RanksFailed("rank 1 failed: RuntimeError: out of memory")
        return super().step(*args, **kwargs)


async def test_a_failed_rank_ends_the_tui():
    engine = FailingEngine(make_session("llama", steps=10))
    app = make_app(engine_factory(engine), theme="textual-dark")
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("c")
        for _ in range(300):
            if app.return_code is not None:
                break
            await asyncio.sleep(0.01)
    assert app.return_code == 1
    assert isinstance(app._return_value, RanksFailed)


async def test_other_engine_errors_keep_the_tui():
    class Broken(FakeEngine):
        def step(self, *args, **kwargs):
            raise RuntimeError("one bad step")

    app = make_app(engine_factory(Broken(make_session("llama", steps=10))), theme="textual-dark")
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("n")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.return_code is None and app.view.state == "error"


def test_status_and_kv_pane_show_where_the_model_is():
    from dataclasses import replace

    from lmscope.engine.records import CacheStats, LayerCache
    from lmscope.testing import make_info
    from lmscope.tui.view import View
    from lmscope.tui.widgets.kv_cache import summary
    from lmscope.tui.widgets.status import model_line

    info = replace(make_info("llama"), placement="device map auto: layers 20 cuda:0 · 10 cpu")
    assert "device map auto: layers 20 cuda:0 · 10 cpu" in model_line(View(info=info)).plain
    assert "device map" not in model_line(View(info=make_info("llama"))).plain

    def layer(index, device):
        return LayerCache(index, "self", (1, 3, 8, 64), (1, 3, 8, 64), "float32", 6144, device)

    spread = CacheStats((layer(0, "cuda:0"), layer(1, "cuda:0"), layer(2, "cpu")), 9, 3, "DynamicCache")
    text = summary(spread, "step 1").plain
    assert "on cuda:0" in text and "12.0 KiB" in text and "on cpu" in text
    one = CacheStats((layer(0, "cpu"), layer(1, "cpu")), 9, 3, "DynamicCache")
    assert " on " not in summary(one, "step 1").plain
