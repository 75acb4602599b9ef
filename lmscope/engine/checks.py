"""Checks of the user's input that run before any model loads (and before the TUI takes the screen).

Everything the flags, the prompt, the cache or the model folder can get wrong is a UserError
here: one line saying what was wrong and what to do. The checks read at most a config.json and
a tokenizer_config.json; the weights are never touched.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmscope.engine.errors import UserError

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
    from lmscope.engine.recording import ROW_DTYPES, check_record_path

    if record is not None:
        check_record_path(record)  # no name, a folder, a device, a file that is not a trace
    if record_dtype not in ROW_DTYPES:
        raise UserError(f"--record-dtype must be one of {', '.join(ROW_DTYPES)}")
    if record is None and record_dtype != ROW_DTYPES[0]:
        raise UserError("--record-dtype sets how --record stores attention rows: pass --record FILE too")


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
        raise UserError(f"lmscope's cache {folder} is a file, not a folder: set LMSCOPE_CACHE to a writable folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(
            f"lmscope's cache {folder} is not writable ({error.strerror or type(error).__name__}): "
            "set LMSCOPE_CACHE to a writable folder"
        ) from None


def check_model_folder(folder: Path, family: str, chat: bool) -> None:
    """A local model folder: exists, has a readable config.json of the right family, and a chat
    template when ``--chat`` asks for one."""
    from lmscope.engine import models

    if folder.exists() and not folder.is_dir():
        raise UserError(f"{str(folder)!r} is a file, not a model folder: pass the folder that holds its config.json")
    if not folder.is_dir():
        raise UserError(f"model folder {str(folder)!r} does not exist")
    if not any(folder.iterdir()):
        raise UserError(f"model folder {str(folder)!r} is empty")
    config = _read_json(folder / "config.json", "config.json")
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise UserError(f"{folder / 'config.json'} has no model_type: is this a transformers model folder?")
    family_found = models.family_of(_ConfigView(config))
    if family_found != family:
        raise UserError(f"{folder} is a {family_found} model: run `lmscope {family_found}` "
                        f"instead of `lmscope {family}`")
    if chat and not has_chat_template(folder):
        raise UserError(f"--chat needs a chat template, and the tokenizer in {folder} has none: drop --chat")


def has_chat_template(folder: Path) -> bool:
    """Whether a tokenizer folder ships a chat template (in its config or as a .jinja file)."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    path = folder / "tokenizer_config.json"
    return path.is_file() and bool(_read_json(path, "tokenizer_config.json").get("chat_template"))


def _read_json(path: Path, name: str) -> dict:
    if not path.is_file():
        raise UserError(f"{path.parent} has no {name}: is this a transformers model folder?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({type(error).__name__}): the folder is damaged") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object: the folder is damaged")
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
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()
