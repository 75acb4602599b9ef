"""Screenshots of the real app on the default models, for the README: ``make screenshots``.

A shot that only needs a step and a tab records the session (``--record``) and renders it with
``lmscope open FILE --svg``; a shot that needs keys (sampling, forcing a token, the branches view)
opens the same app the CLI opens (``make_app`` over ``open_session``), headless at a fixed size,
and presses them like a user. Every SVG goes into ``screenshots/``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from lmscope.engine.session import SessionOptions, open_session
from lmscope.engine.settings import GenerationSettings

OUT = Path(__file__).resolve().parent.parent / "screenshots"


@dataclass(frozen=True)
class Shot:
    """One screenshot: the session to open, the keys to press, the file to write."""

    name: str
    options: SessionOptions
    keys: tuple[str, ...] = ()
    size: tuple[int, int] = (120, 40)
    tab: str | None = None
    """Record and render with ``lmscope open --svg`` on this tab instead of pressing keys."""


SHOTS = (
    Shot("llama_sampling", SessionOptions(
        family="llama", prompt="Write one sentence about the sea.", chat=True, device="cpu",
        settings=GenerationSettings(max_new_tokens=24, do_sample=True, temperature=0.8, top_k=40, top_p=0.9,
                                    repetition_penalty=1.2, seed=3),
    ), keys=("n",) * 9 + ("left", "right_square_bracket") * 1),
    Shot("llama_kv_cache", SessionOptions(
        family="llama", prompt="What is the capital of France?", chat=True, device="cpu",
        settings=GenerationSettings(max_new_tokens=16),
    ), tab="kv"),
    Shot("t5_cross_attention", SessionOptions(
        family="t5", prompt="translate English to German: the man opens the door because the dog sees the cat",
        device="cpu", settings=GenerationSettings(max_new_tokens=32),
    ), tab="cross"),
    # " Paris" is step 5; the cursor goes to the raw logits' third candidate, enter forces it,
    # c runs the forced branch to its end, t opens the branches view.
    Shot("llama_forced_branch", SessionOptions(
        family="llama", prompt="What is the capital of France?", chat=True, device="cpu",
        settings=GenerationSettings(max_new_tokens=16),
    ), keys=("c", "home") + ("right",) * 6 + ("focus:#stages", "down", "down", "down", "enter", "c", "t")),
    Shot("llama_80x24", SessionOptions(
        family="llama", prompt="What is the capital of France?", chat=True, device="cpu",
        settings=GenerationSettings(max_new_tokens=8, do_sample=True, top_k=20, seed=1),
    ), keys=("n",) * 4, size=(80, 24)),
    Shot("llama_layers_paris", SessionOptions(
        family="llama", prompt="What is the capital of France?", chat=True, device="cpu",
        settings=GenerationSettings(max_new_tokens=8),
    ), keys=("n",) * 6 + ("s", "left_square_bracket")),  # step into " Paris", the last layer selected
)


def render(shot: Shot) -> Path:
    """Record the session to the end, then ``lmscope open FILE --svg`` it on ``shot.tab``."""
    import tempfile

    from lmscope.cli import main as lmscope

    with tempfile.TemporaryDirectory() as folder:
        trace = str(Path(folder) / f"{shot.name}.lmscope")
        stepper = open_session(shot.options)
        from lmscope.engine.recording import RecordingEngine
        from lmscope.engine.trace_writer import TraceWriter
        from lmscope.headless import options_dict

        engine = RecordingEngine(stepper, TraceWriter(trace), options_dict(shot.options))
        engine.start()
        while not engine.finished:
            engine.step()
        engine.writer.close()
        out = OUT / f"{shot.name}.svg"
        width, height = shot.size
        code = lmscope(["open", trace, "--svg", str(out), "--tab", shot.tab, "--size", f"{width}x{height}"])
        if code:
            raise SystemExit(code)
        return out


async def take(shot: Shot) -> Path:
    from lmscope.testing import wait_until_idle
    from lmscope.tui.app import make_app

    app = make_app(partial(open_session, shot.options), theme="textual-dark")
    async with app.run_test(size=shot.size) as pilot:
        await wait_until_idle(pilot)
        for key in shot.keys:
            if key.startswith("focus:"):
                app.screen.query_one(key.removeprefix("focus:")).focus()
            else:
                await pilot.press(key)
            await wait_until_idle(pilot)
        await pilot.wait_for_scheduled_animations()
        return Path(app.save_screenshot(filename=f"{shot.name}.svg", path=str(OUT)))


def main() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")
    OUT.mkdir(exist_ok=True)
    only = set(sys.argv[1:])
    unknown = sorted(only - {shot.name for shot in SHOTS})
    if unknown:  # a misspelt name made nothing, silently
        print(f"make_screenshots.py: no screenshot named {', '.join(unknown)}; the names are "
              f"{', '.join(shot.name for shot in SHOTS)}", file=sys.stderr)
        sys.exit(2)
    for shot in SHOTS:
        if not only or shot.name in only:
            print(render(shot) if shot.tab else asyncio.run(take(shot)))


if __name__ == "__main__":
    main()
