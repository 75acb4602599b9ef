"""Pure parts of the TUI: View transitions, heatmap fitting, text helpers, record builders."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from lmscope.engine.records import AttentionRows
from lmscope.testing import make_session
from lmscope.tui.draw.attention_rows import self_attention
from lmscope.tui.draw.heatmap import LEVELS, fit, pooled_rows, window
from lmscope.tui.draw.render import is_special, percent, printable, printable_lines, stage_label, token_text
from lmscope.tui.view import View
from lmscope.tui.draw.stage_table import stage_table


@pytest.fixture(scope="module")
def session():
    return make_session("llama", steps=5)


def test_view_follows_new_steps_only_when_on_the_newest(session):
    view = View(info=session.info).started(session.prompt)
    assert view.index == -1 and view.state == "ready"
    view = view.appended(session.steps[0]).appended(session.steps[1])
    assert view.index == 1
    view = view.moved(-1).appended(session.steps[2])
    assert view.index == 0 and len(view.steps) == 3
    assert view.moved(-5).index == -1 and view.moved(9).index == 2
    assert view.started(session.prompt).steps == ()


@pytest.mark.parametrize("selected", [-1, 0, 1])
@pytest.mark.parametrize("hits", [(), (0,), (2,), (1, 2)])
def test_a_batch_of_steps_joins_the_view_as_one_by_one(session, selected, hits):
    """``appended_all`` (a continue's hand-over) makes the View that appending each step makes:
    selection (following, or not, or from a breakpoint's hit on), marks, notice and cursor."""
    start = View(info=session.info).started(session.prompt).appended(session.steps[0]).appended(session.steps[1])
    start = replace(start, index=selected, cursor=(0, 1))
    batch = [(record, f"hit {i}" if i in hits else None) for i, record in enumerate(session.steps[2:5])]
    one_by_one = start
    for record, hit in batch:
        one_by_one = one_by_one.appended(record, hit)
    together = start.appended_all(batch)
    fields = ("steps", "index", "marks", "notice", "cursor")
    assert [getattr(together, name) for name in fields] == [getattr(one_by_one, name) for name in fields]
    assert start.appended_all([]) is start


def test_view_layer_and_head_wrap_and_mean(session):
    view = View(info=session.info)
    assert view.with_layer(-1).layer == session.info.layers - 1
    assert view.with_head(-1).head == session.info.query_heads - 1
    mean = view.with_mean()
    assert mean.head is None and mean.with_mean().head == 0
    assert mean.with_head(1).head == 0 and mean.with_head(-1).head == session.info.query_heads - 1


def test_token_text_makes_whitespace_and_controls_visible():
    assert token_text("\n") == "⏎" and token_text(" \t") == " ⇥" and token_text("") == "∅"
    assert token_text("  ") == "··" and token_text("\x01a") == "\\x01a"
    assert token_text("[INST]") == "[INST]"  # literal: callers append it to Text, never markup
    assert is_special("<s>") and is_special("[/INST]") and is_special("<|im_end|>") and not is_special("[x")


def test_token_text_writes_every_other_character_that_is_not_printable_as_repr_does():
    assert token_text("\x1b[31m") == "\\x1b[31m" and token_text("a\x7f") == "a\\x7f"
    assert token_text("\x9b31m") == "\\x9b31m"  # a C1 control: CSI on many terminals
    assert token_text("abc\u202edef") == "abc\\u202edef" and token_text("\u200b") == "\\u200b"
    assert token_text("\r\n\x00\u00a0") == "␍⏎␀⍽"  # stand-ins first
    assert token_text(" Paris 北京 é") == " Paris 北京 é"


def test_printable_escapes_other_text_as_the_cli_does_and_keeps_printable_text():
    assert printable("./a\x1b[31mRED") == "./a\\x1b[31mRED" and printable("m\u202e\x9b") == "m\\u202e\\x9b"
    assert printable("a\tb\nc") == "a\\tb\\nc"  # one line: a line break would push the next line away
    assert printable("temperature=0.7 [bold] C:\\x") == "temperature=0.7 [bold] C:\\x"
    assert printable_lines("one \x1b\ntwo\x9b") == "one \\x1b\ntwo\\x9b"
    assert stage_label("Top\x1bLogitsWarper") == "Top\\x1b"


def test_percent_and_stage_label_fit_their_cells():
    assert [percent(p) for p in (1.0, 0.41, 0.042, 0.001)] == ["100%", " 41%", "4.2%", " <1%"]
    assert stage_label("TopPLogitsWarper") == "TopP" and stage_label("logits") == "logits"


def pooled_levels(values, keys: int, cols: int) -> np.ndarray:
    """One row pooled alone."""
    return pooled_rows([values], keys, cols)[0]


def test_pooled_levels_use_one_fixed_scale():
    row = np.array([1.0, 0.0, 0.25, 0.0], dtype=np.float32)
    assert pooled_levels(row, 4, 2).tolist() == [LEVELS - 1, round(0.5 * (LEVELS - 1))]
    assert pooled_levels(row[:2], 4, 4).tolist()[2:] == [-1, -1]  # keys the row does not have yet
    assert pooled_levels(np.array([0.04], dtype=np.float32), 1, 3).tolist() == [round(0.2 * (LEVELS - 1))] * 3


def test_pooled_rows_pool_each_row_as_alone():
    rng = np.random.default_rng(3)
    for keys, cols in ((540, 100), (7, 20), (64, 64)):
        rows = [rng.dirichlet(np.ones(length)).astype(np.float32) for length in (keys, keys // 2 + 1, 1)]
        pooled = pooled_rows(rows, keys, cols)
        assert pooled.shape == (3, cols) and pooled.dtype == np.int8
        for values, levels in zip(rows, pooled):
            assert levels.tolist() == pooled_levels(values, keys, cols).tolist()
        if keys == 540:  # the one-key row: its key in the first column, no keys in the others
            assert pooled[2, 0] == LEVELS - 1 and (pooled[2, 1:] == -1).all()


def test_window_keeps_the_last_rows_and_stretches_few():
    assert window(10, 4) == [6, 7, 8, 9]
    assert window(2, 7) == [0, 0, 0, 1, 1, 1, None]
    assert window(0, 2) == [None, None]


def test_fit_ends_at_the_selected_step(session):
    view = View(info=session.info, prompt=session.prompt, steps=session.steps, index=2)
    matrix = self_attention(view)
    # The prompt's rows, then steps 1 and 2: step 0's query is the prompt's last, already a row.
    assert len(matrix.rows) == len(session.prompt.input_ids) + 2
    assert [rows.query_start + q for rows, q, _ in matrix.rows[-3:]] == \
        [len(session.prompt.input_ids) - 1 + i for i in range(3)]
    grid = fit(matrix, 0, None, 6, 20, {})
    assert grid.labels[grid.selected] == matrix.rows[-1][2]
    assert grid.keys == session.steps[2].attention.probs.shape[-1]


def test_stage_table_marks_chosen_and_removed(session):
    record = next(s for s in session.steps if any(st.removed for st in s.stages))
    text = "\n".join("".join(seg.text for seg in line) for line in stage_table(record, 100, 14))
    assert "▸" in text and "✗" in text and "TopP" in text


def test_builders_are_deterministic_and_shaped_like_the_engine():
    a, b = make_session("t5", steps=3, seed=4), make_session("t5", steps=3, seed=4)
    assert np.array_equal(a.steps[1].cross_attention.probs, b.steps[1].cross_attention.probs)
    step = a.steps[2]
    assert step.attention.probs.shape[2:] == (1, 3) and step.cross_attention.probs.shape[-1] == len(a.prompt.input_ids)
    assert {e.kind for e in step.cache.layers} == {"self", "cross"} and a.prompt.decoder_start_token == "<pad>"
    assert np.allclose(step.attention.probs.sum(-1), 1.0, atol=1e-5)
    assert isinstance(a.prompt.attention, AttentionRows) and a.prompt.attention.kind == "encoder"


def test_tui_and_testing_never_import_torch():
    code = ("import sys, lmscope.tui.app, lmscope.testing; "
            "sys.exit('torch' in sys.modules or 'transformers' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_frame_pacer_spaces_frames_by_their_cost():
    from lmscope.tui.pacing import FramePacer

    now, cpu = [0.0], [0.0]
    pacer = FramePacer(duty=0.05, min_interval=0.1, max_interval=1.0, clock=lambda: now[0], cpu=lambda: cpu[0])
    pacer.begin()
    assert pacer.delay() == pytest.approx(0.1)  # the first frame after min_interval
    now[0], cpu[0] = 0.1, 0.02  # 20 ms of UI work: the next frame 0.4 s later (5%)
    pacer.drawn()
    assert pacer.interval == pytest.approx(0.4) and pacer.delay() == pytest.approx(0.4)
    now[0] = 0.3
    assert pacer.delay() == pytest.approx(0.2)
    now[0], cpu[0] = 0.5, 0.02 + 0.2  # an expensive frame: capped at max_interval
    pacer.drawn()
    assert pacer.interval == 1.0
    now[0], cpu[0] = 1.5, 0.2201  # a cheap one: floored at min_interval
    pacer.drawn()
    assert pacer.interval == pytest.approx(0.1)


def test_frame_pacer_spaces_a_continues_first_frame_by_the_last_measured_frame():
    from lmscope.tui.pacing import FramePacer

    now = [0.0]
    pacer = FramePacer(duty=0.05, min_interval=0.1, max_interval=1.0, clock=lambda: now[0], cpu=lambda: 0.0)
    pacer.begin()
    assert pacer.interval == pytest.approx(0.1)  # nothing measured yet: after min_interval
    pacer.measured(0.02)  # a frame of new steps took 20 ms: the next continue's first frame 0.4 s in
    now[0] = 5.0
    pacer.begin()
    assert pacer.interval == pytest.approx(0.4) and pacer.delay() == pytest.approx(0.4)
    pacer.measured(0.2)
    pacer.begin()
    assert pacer.interval == 1.0  # bounded, as every frame's wait is


def test_a_quoted_token_escapes_once():
    """A token named inside a line (the Layers pane's title, a branch's forced token) is quoted
    around token_text, not repr'd: an ESC shows as one ``\\x1b``, a newline as its stand-in."""
    from lmscope.tui.draw.render import quoted_token

    assert quoted_token(" Paris") == "' Paris'"
    assert quoted_token("a\x1b") == "'a" + "\\" + "x1b'"
    assert quoted_token("\n") == "'⏎'"


def test_the_kv_layer_table_names_a_sliding_layers_window():
    """Layers with a window make their own runs, labelled with it; the rest read as before."""
    from rich.console import Console

    from lmscope.engine.records import CacheStats, LayerCache
    from lmscope.tui.widgets.kv_cache import layer_table

    def entry(layer, window=None):
        return LayerCache(layer, "self", (1, 2, 9, 16), (1, 2, 9, 16), "float32", 2304, "cpu", window)

    stats = CacheStats((entry(0, 4), entry(1, 4), entry(2), entry(3, 4)), query_heads=4, kv_heads=2)
    console = Console(width=120, record=True)
    console.print(layer_table(stats))
    rows = console.export_text().splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["0-1", "2", "3"]
    assert "self, window 4" in rows[0] and "window" not in rows[1] and "self, window 4" in rows[2]
