"""``--device-map``: accelerate places the layers (here: all of them offloaded to disk) and
lmscope's output is the plain model's, tokens, stages and attention alike."""

from __future__ import annotations

import json

import pytest

from lmscope.cli import main
from lmscope.engine.session import SessionOptions, open_session

ARGS = ["--prompt", "the quick brown fox", "--max-new-tokens", "5", "--json", "--attention"]


def without_timing(lines: list[dict]) -> list[dict]:
    for line in lines:
        line.pop("elapsed_s", None)
        for layer in (line.get("cache") or {}).get("layers", []):
            layer.pop("device", None)  # the plain model's cache is on "cpu" as well; the map's on "cpu" too
    return lines


def run_json(argv, capsys) -> list[dict]:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""  # accelerate's notes about offloaded weights stay out of the output
    return without_timing([json.loads(line) for line in captured.out.splitlines()])


def test_disk_offload_gives_the_plain_output(tiny_llama_dir, tmp_path, capsys):
    plain = run_json(["llama", "--model", str(tiny_llama_dir), *ARGS], capsys)
    mapped = run_json(["llama", "--model", str(tiny_llama_dir), *ARGS, "--device-map", "auto",
                       "--max-memory", "cpu=40KB", "--offload-folder", str(tmp_path / "offload")], capsys)
    assert mapped == plain
    assert len(plain) == 5 and all(line["attention"] and line["cache"]["layers"] for line in plain)


def test_the_status_line_summarises_the_map(tiny_llama_dir, tiny_t5_dir, tmp_path):
    """Layers per device, as accelerate placed them; inputs go to the embedding's execution device."""
    stepper = open_session(SessionOptions(family="llama", prompt="the quick", model=str(tiny_llama_dir),
                                          device_map="sequential", max_memory="cpu=40KB",
                                          offload_folder=str(tmp_path / "a")))
    assert stepper.info.placement.startswith("device map sequential: layers ")
    assert "disk" in stepper.info.placement
    stepper.start()
    record = stepper.step()
    assert record.cache.bytes_by_device() == {"cpu": record.cache.total_bytes}
    t5 = open_session(SessionOptions(family="t5", prompt="the quick", model=str(tiny_t5_dir), device_map="auto",
                                     max_memory="cpu=40KB", offload_folder=str(tmp_path / "b")))
    t5.start()
    assert t5.step().token_id >= 0 and "device map auto" in t5.info.placement


def test_bad_device_map_flags_are_one_line(tiny_llama_dir, capsys):
    code = main(["llama", "--model", str(tiny_llama_dir), "--json", "--device-map", "auto", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "leave --device at auto" in err
    code = main(["llama", "--model", str(tiny_llama_dir), "--json", "--device-map", "auto", "--max-memory", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "expected DEVICE=SIZE" in err
    for flag, value in (("--max-memory", "cpu=1GB"), ("--offload-folder", "offload")):
        code = main(["llama", "--model", str(tiny_llama_dir), "--json", flag, value])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and flag in err and "--device-map" in err


@pytest.mark.parametrize("device_map", ["auto", "balanced", "sequential"])
def test_the_device_map_flags_place_the_layers_where_the_budget_says(device_map, tiny_llama_dir, tmp_path, capsys):
    """``--device-map MAP --max-memory BUDGET`` from the command line: with a CPU budget smaller
    than a layer every layer goes to disk, with a large one every layer stays on the CPU (the
    recording keeps the status bar's summary of the map); the output is the plain model's."""
    from lmscope.engine.trace_reader import Trace

    plain = run_json(["llama", "--model", str(tiny_llama_dir), *ARGS], capsys)
    for budget, placed in (("cpu=40KB", "layers 2 disk"), ("cpu=1GB", "layers 2 cpu")):
        path = tmp_path / f"{budget}.lmscope"
        mapped = run_json(["llama", "--model", str(tiny_llama_dir), *ARGS, "--device-map", device_map,
                           "--max-memory", budget, "--record", str(path)], capsys)
        assert Trace(path).info.placement == f"device map {device_map}: {placed}"
        assert mapped == plain


def test_offload_folder_holds_the_layers_of_a_checkpoint_that_cannot_be_read_lazily(tiny_llama_dir, tmp_path,
                                                                                   capsys):
    """``--offload-folder DIR``: a safetensors checkpoint is read from where it is, a pickled one
    (``pytorch_model.bin``) has its offloaded weights written to DIR; without DIR that is one line."""
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_llama_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    argv = ["llama", "--model", str(folder), *ARGS, "--device-map", "auto", "--max-memory", "cpu=40KB"]
    mapped = run_json([*argv, "--offload-folder", str(tmp_path / "offload")], capsys)
    assert mapped == run_json(["llama", "--model", str(tiny_llama_dir), *ARGS], capsys)
    offloaded = {path.name for path in (tmp_path / "offload").iterdir()}
    assert "model.layers.1.self_attn.q_proj.weight.safetensors" in offloaded and len(offloaded) > 10
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("lmscope: error: cannot load model")
    assert "offload_folder" in err


def test_a_continue_on_a_disk_offloaded_map_keeps_the_plain_rows(tiny_llama_dir, tmp_path):
    """Rows made later (as a continue makes them) on a map that offloads every layer to disk, and
    a continue's layer capture replayed through the offloaded layers."""
    import numpy as np

    def steps(stepper, rows_later: bool):
        stepper.start()
        records = [stepper.step(rows_later=rows_later) for _ in range(6)]
        stepper.complete_waiting()
        return records

    from lmscope.engine.settings import GenerationSettings

    options = dict(family="llama", prompt="the quick brown fox", model=str(tiny_llama_dir),
                   settings=GenerationSettings(max_new_tokens=6))
    plain_session = open_session(SessionOptions(**options))
    plain = steps(plain_session, rows_later=False)
    mapped = open_session(SessionOptions(**options, device_map="auto", max_memory="cpu=40KB",
                                         offload_folder=str(tmp_path / "offload")))
    later = steps(mapped, rows_later=True)
    assert mapped._can_defer
    assert [r.token_id for r in later] == [r.token_id for r in plain]
    for want, have in zip(plain, later):
        np.testing.assert_allclose(have.attention.probs, want.attention.probs, atol=1e-5)
    from lmscope.engine.layers import REPLAY

    assert mapped._residuals[4][0] is REPLAY
    replayed, in_step = mapped._captured(4)[0], plain_session._captured(4)[0]
    np.testing.assert_allclose(replayed.residual, in_step.residual, atol=1e-5)
    np.testing.assert_allclose(replayed.previews, in_step.previews, atol=1e-5)
