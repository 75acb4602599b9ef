"""Run under torchrun (or alone, as the reference) by ``test_tensor_parallel.py``.

Drives a session through the debugger's commands (step, rewind, force, restart) and prints, on
rank 0 only, one JSON line: each step's token, raw top-k ids and probabilities, and the first
attention row. ``LMSCOPE_TEST_FAIL_RANK=N`` makes rank N fail inside its third step.
"""

from __future__ import annotations

import json
import os
import sys

from lmscope.engine import distributed
from lmscope.engine.session import SessionOptions, open_session
from lmscope.engine.settings import GenerationSettings


def summary(record) -> dict:
    raw = record.stages[0]
    rows = record.attention
    return {"step": record.step, "token": record.token_id, "by": record.chosen_by,
            "top": [c.token_id for c in raw.top], "probs": [round(c.prob, 6) for c in raw.top],
            "attention": rows.probs[:, :, 0].tolist() if rows is not None else None}


def session(engine) -> list[dict]:
    engine.start()
    seen = [summary(engine.step()) for _ in range(4)]
    engine.rewind(2)
    seen.append(summary(engine.step(force=5)))
    seen.append(summary(engine.step()))
    engine.start()  # restart
    seen.append(summary(engine.step()))
    return seen


def main(model: str) -> int:
    fail_rank = os.environ.get("LMSCOPE_TEST_FAIL_RANK")
    options = SessionOptions(family="llama", prompt="the quick brown fox", model=model,
                             settings=GenerationSettings(max_new_tokens=8, do_sample=True, seed=11))
    engine = open_session(options)
    if fail_rank is not None and distributed.rank() == int(fail_rank):
        calls = {"step": 0}
        step = engine._engine.step

        def failing_step(*args, **kwargs):
            calls["step"] += 1
            if calls["step"] == 3:
                raise RuntimeError("injected failure")
            return step(*args, **kwargs)

        engine._engine.step = failing_step
    if distributed.rank() > 0:
        code = engine.follow()
        distributed.finish()
        return code
    with distributed.leading():
        print(json.dumps(session(engine)), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as error:  # as the command line does: one line, no traceback
        from lmscope.cli import _fail
        from lmscope.engine.errors import first_line

        sys.exit(_fail(f"{type(error).__name__}: {first_line(error)}", 1))
