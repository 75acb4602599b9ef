"""Checks of the user's input that run before any model loads (and before the TUI takes the screen).

Everything the flags, the prompt, the cache or the model folder can get wrong is a UserError
here: one line saying what was wrong and what to do. The checks read at most a config.json and
a tokenizer_config.json; the weights are never touched.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Callable

from lmscope.engine.errors import UserError

SYSTEM_FOLDERS = ("/dev", "/proc", "/sys")
"""Where names are the system's devices, processes and kernel settings, not files of the user's:
``/dev/stdout`` is a link there, and a file written in its place replaces the system's link."""

SEED_RANGE = (-(2**63), 2**64 - 1)
"""What ``torch.manual_seed`` accepts (a larger number overflows inside torch)."""


def check_output_flags(json_lines: bool, headless: bool, attention: bool, layers: bool = False) -> None:
    """Refuse output flags that contradict each other instead of silently picking one."""
    if json_lines and headless:
        raise UserError("--json and --headless are two output formats: pass one of them")
    if attention and not json_lines:
        raise UserError("--attention adds attention rows to --json output: pass --json too")
    if layers and not json_lines:
        raise UserError("--layers adds each layer's logit lens to --json output: pass --json too")


def check_record_flags(record: str | None, record_dtype: str) -> None:
    """Refuse an empty file name, a row dtype that is not one, or one given without ``--record``,
    before any model loads."""
    from lmscope.engine.trace_format import ROW_DTYPES
    from lmscope.engine.trace_writer import check_record_path

    if record is not None:
        check_record_path(record)  # no name, a folder, a device, a file that is not a trace
    if record_dtype not in ROW_DTYPES:
        raise UserError(f"--record-dtype must be one of {', '.join(ROW_DTYPES)}")
    if record is None and record_dtype != ROW_DTYPES[0]:
        raise UserError("--record-dtype sets how --record stores attention rows: pass --record FILE too")


def reason(error: OSError) -> str:
    """The OS's words for a failed open or stat ("File name too long"), for a one-line message."""
    return error.strerror or type(error).__name__


def stat_or_none(path: str | os.PathLike, what: str, follow: bool = True) -> os.stat_result | None:
    """``path``'s stat, or None where nothing is there. Any other failure (a name too long, a link
    loop, a file where a folder should be) is one line: ``what``, then the OS's reason."""
    try:
        return os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UserError(f"{what}: {reason(error)}") from None


def check_overwrite(path: str | os.PathLike, what: str, kind: str, ours: Callable[[bytes], bool],
                    example: str) -> None:
    """Refuse an output path where writing would lose something lmscope did not write.

    A new file passes (its folder's problems are the writer's to say), and so does an empty
    file or one whose first bytes are ``ours``: a file of ``kind`` (an lmscope trace, an SVG).
    Refused, each in one line that starts with ``what``: a folder, anything that is not a regular
    file (a device, a pipe: its reader or the system would get the output), anything under
    :data:`SYSTEM_FOLDERS`, a link to anything but a file of ``kind`` (``/dev/stdout`` leads to
    an empty file, which is no reason to replace the system's link) or to nothing (a dangling
    link: an SVG would be written where it leads, a recording would replace it), any other file.

    Args:
        example: a file name to suggest in a folder given instead of a file ("run.lmscope").
    """
    here = stat_or_none(path, what, follow=False)
    linked = here is not None and stat.S_ISLNK(here.st_mode)
    target = stat_or_none(path, what) if linked else here
    if target is not None and stat.S_ISDIR(target.st_mode):
        raise UserError(f"{what}: it is a folder; name a file in it, such as {str(Path(path) / example)!r}")
    if here is not None and not (linked or stat.S_ISREG(here.st_mode)):
        raise UserError(f"{what}: it is not a regular file")
    place = system_place(path)
    if place:
        raise UserError(f"{what}: it {place}, the system's, not a place for files: name a file elsewhere")
    if here is None:
        return
    if linked and target is None:
        raise UserError(f"{what}: it is a link to {os.path.realpath(path)!r}, which does not exist (a dangling "
                        "link; lmscope writes over links to its own files only): name another file")
    start = _first_bytes(path, what) if target is not None and stat.S_ISREG(target.st_mode) else b""
    if linked and not (start and ours(start)):
        raise UserError(f"{what}: it is a link to {os.path.realpath(path)!r}, which is not {kind} "
                        "(lmscope writes over links to its own files only): name another file")
    if start and not ours(start):
        raise UserError(f"{what}: it exists and is not {kind} (lmscope writes over its own files only): "
                        "name another file")


SHARED_MEMORY = "/dev/shm"
"""A folder of files under /dev (a tmpfs): a place for them, unlike the rest of /dev."""


def _system_folder(path: str | os.PathLike) -> str | None:
    """The folder of :data:`SYSTEM_FOLDERS` that ``path`` is in or leads into, if any."""
    for place in (os.path.abspath(path), os.path.realpath(path)):
        if _within(place, SHARED_MEMORY):
            continue
        for folder in SYSTEM_FOLDERS:
            if _within(place, folder):
                return folder
    return None


def system_place(path: str | os.PathLike) -> str | None:
    """Where ``path`` is, for a message: "is in /proc", "leads into /dev" (a link elsewhere that
    leads there), or None outside :data:`SYSTEM_FOLDERS`."""
    folder = _system_folder(path)
    if folder is None:
        return None
    return f"is in {folder}" if _within(os.path.abspath(path), folder) else f"leads into {folder}"


def _within(place: str, folder: str) -> bool:
    return place == folder or place.startswith(folder + "/")


def _first_bytes(path: str | os.PathLike, what: str, size: int = 1024) -> bytes:
    """The first bytes of a regular file, enough to tell whose it is."""
    try:
        with open(path, "rb") as file:
            return file.read(size)
    except OSError as error:
        raise UserError(f"{what}: {reason(error)}") from None


def is_text(*texts: str) -> bool:
    """Whether every string encodes as UTF-8. Invalid UTF-8 bytes on the command line reach
    Python as lone surrogates (PEP 383); a tokenizer would fail on them with an internal TypeError."""
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_prompt(prompt: str) -> None:
    """Refuse a prompt that is not valid text (:func:`is_text`)."""
    if not is_text(prompt):
        raise UserError("the prompt is not valid UTF-8 text: check the terminal's or the file's encoding")


def check_settings(settings) -> None:
    """Range checks transformers would only warn about, or torch fail on."""
    low, high = SEED_RANGE
    if settings.seed is not None and not low <= settings.seed <= high:
        raise UserError(f"--seed must be between {low} and {high}")
    if settings.min_new_tokens is not None and settings.min_new_tokens > settings.max_new_tokens:
        raise UserError(
            f"--min-new-tokens ({settings.min_new_tokens}) is above --max-new-tokens ({settings.max_new_tokens}): "
            "lower it or raise --max-new-tokens"
        )


def check_device(device: str, dtype: str) -> None:
    """The device exists here and the dtype is one lmscope knows (imports torch, no model)."""
    from lmscope.engine import models

    models.resolve_dtype(dtype, models.resolve_device(device))


def check_cache_writable(folder: Path) -> None:
    """The default Llama's cache can be created and written (the first run converts into it).

    Tried for real rather than with ``os.access``, which says yes to root on a read-only mount.
    """
    import tempfile

    if folder.exists() and not folder.is_dir():
        raise UserError(f"lmscope's cache {str(folder)!r} is a file, not a folder: set LMSCOPE_CACHE to a writable folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(
            f"lmscope's cache {str(folder)!r} is not writable ({error.strerror or type(error).__name__}): "
            "set LMSCOPE_CACHE to a writable folder"
        ) from None


def check_model_folder(folder: Path, family: str, chat: bool) -> None:
    """A local model folder: exists, has a readable config.json of the right family, and a chat
    template when ``--chat`` asks for one."""
    found = stat_or_none(folder, f"model folder {str(folder)!r}")
    if found is None:
        raise UserError(f"model folder {str(folder)!r} does not exist")
    if not stat.S_ISDIR(found.st_mode):
        raise UserError(f"{str(folder)!r} is a file, not a model folder: pass the folder that holds its config.json")
    try:
        _check_model_files(folder, family, chat)
    except OSError as error:  # a folder that cannot be listed, a config.json that cannot be looked at
        raise UserError(f"model folder {str(folder)!r} cannot be read: {reason(error)}") from None


def _check_model_files(folder: Path, family: str, chat: bool) -> None:
    """What is in the folder: files, a config.json of ``family``, a chat template for ``--chat``."""
    from lmscope.engine import models

    if not any(folder.iterdir()):
        raise UserError(f"model folder {str(folder)!r} is empty")
    config = _read_json(folder / "config.json", "config.json")
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise UserError(f"{str(folder / 'config.json')!r} has no model_type: is this a transformers model folder?")
    family_found = models.family_of(_ConfigView(config))
    if family_found != family:
        raise UserError(f"{str(folder)!r} is a {family_found} model: run `lmscope {family_found}` "
                        f"instead of `lmscope {family}`")
    if chat and not has_chat_template(folder):
        raise UserError(f"--chat needs a chat template, and the tokenizer in {str(folder)!r} has none: drop --chat")


def has_chat_template(folder: Path) -> bool:
    """Whether a tokenizer folder ships a chat template (in its config or as a .jinja file)."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    path = folder / "tokenizer_config.json"
    return path.is_file() and bool(_read_json(path, "tokenizer_config.json").get("chat_template"))


def _read_json(path: Path, name: str) -> dict:
    if not path.is_file():
        raise UserError(f"{str(path.parent)!r} has no {name}: is this a transformers model folder?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{str(path)!r} is not valid JSON ({type(error).__name__}): the folder is damaged") from None
    if not isinstance(data, dict):
        raise UserError(f"{str(path)!r} is not a JSON object: the folder is damaged")
    return data


class _ConfigView:
    """Enough of a PretrainedConfig for ``models.family_of``: attributes from the JSON dict."""

    def __init__(self, data: dict):
        self.model_type = data.get("model_type", "?")
        self.is_encoder_decoder = bool(data.get("is_encoder_decoder", False))


def check_before_loading(options) -> None:
    """Every check that needs no weights, in the order a user would fix them."""
    from lmscope.engine import defaults

    options.check()
    check_prompt(options.prompt)
    check_settings(options.settings)
    check_device(options.device, options.dtype)
    if options.model is None:
        if options.family == "llama" and defaults.is_complete(defaults.default_llama_dir()):
            check_model_folder(defaults.default_llama_dir(), "llama", options.chat)
        elif options.family == "llama":
            check_cache_writable(defaults.cache_dir())
        else:
            check_model_folder(defaults.default_t5_dir(), "t5", options.chat)
    elif _looks_local(options.model):
        check_model_folder(Path(options.model).expanduser(), options.family, options.chat)


def _looks_local(source: str) -> bool:
    """Whether ``--model`` names a folder here rather than a Hub id. A name the OS will not look
    up (too long, a link loop) is taken for a path, so that the folder's check says why."""
    if source.startswith((".", "/", "~")):
        return True
    try:
        os.stat(Path(source).expanduser())
    except (FileNotFoundError, NotADirectoryError):  # "org/name" beside a file named org: a Hub id
        return False
    except OSError:
        return True
    return True
