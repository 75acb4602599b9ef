"""The ``lmscope`` command: parse flags, build options, run the TUI or the headless printer.

torch, transformers and textual are imported inside the commands so ``lmscope --help`` is
instant. Bad input ends with one ``lmscope: error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from lmscope.engine.errors import UserError, first_line
from lmscope.engine.session import DEFAULT_PROMPTS, SessionOptions
from lmscope.engine.settings import GenerationSettings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
    help="Step through a language model's text generation one token at a time.",
)

GEN = "Generation (GenerationConfig names)"
Opt = typer.Option


def _session(family: str, prompt, model, max_new_tokens, min_new_tokens, do_sample, temperature, top_k, top_p,
             min_p, typical_p, repetition_penalty, no_repeat_ngram_size, bad_words, stop_strings, seed, top, chat,
             device, dtype, prefill_rows, json_lines, headless, attention, layers=False) -> None:
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=do_sample, temperature=temperature,
        top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size, bad_words=tuple(bad_words or ()),
        stop_strings=tuple(stop_strings or ()), seed=seed,
    )
    options = SessionOptions(
        family=family, prompt=DEFAULT_PROMPTS[family] if prompt is None else prompt, model=model, settings=settings,
        device=device, dtype=dtype, top=top, chat=chat, capture_attention=attention or not (json_lines or headless),
        prefill_rows=prefill_rows,
    )
    options.check()
    if json_lines or headless:
        from lmscope.headless import run_headless

        run_headless(options, json_lines=json_lines, attention=attention, layers=layers)
    else:
        run_tui(options)


def run_tui(options: SessionOptions) -> None:
    """Open the TUI; the model loads in its worker thread while the app is already up."""
    from functools import partial

    from lmscope.engine.session import model_source
    from lmscope.tui.app import make_app

    # The first run of the default Llama downloads and converts it: do that here, with its
    # progress on the terminal, before Textual owns the screen.
    model_source(options)
    os.environ.setdefault("TQDM_DISABLE", "1")  # loaders' progress bars would draw over the app
    factory = partial(_quiet_open_session, options)
    make_app(factory, title=f"lmscope {options.family}").run()


def _quiet_open_session(options: SessionOptions):
    """open_session with transformers' progress bars and warnings off: stderr is the app's screen."""
    from transformers.utils import logging as hf_logging

    from lmscope.engine.session import open_session

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    return open_session(options)


def _command(family: str):
    def command(
        prompt: Annotated[Optional[str], Opt("--prompt", "-p", help="Text to generate from.")] = None,
        model: Annotated[Optional[str], Opt(help="Hub id or local folder (default: the offline default).")] = None,
        max_new_tokens: Annotated[int, Opt(rich_help_panel=GEN)] = 32,
        min_new_tokens: Annotated[Optional[int], Opt(rich_help_panel=GEN)] = None,
        do_sample: Annotated[bool, Opt("--do-sample", rich_help_panel=GEN)] = False,
        temperature: Annotated[Optional[float], Opt(rich_help_panel=GEN)] = None,
        top_k: Annotated[Optional[int], Opt(rich_help_panel=GEN)] = None,
        top_p: Annotated[Optional[float], Opt(rich_help_panel=GEN)] = None,
        min_p: Annotated[Optional[float], Opt(rich_help_panel=GEN)] = None,
        typical_p: Annotated[Optional[float], Opt(rich_help_panel=GEN)] = None,
        repetition_penalty: Annotated[Optional[float], Opt(rich_help_panel=GEN)] = None,
        no_repeat_ngram_size: Annotated[Optional[int], Opt(rich_help_panel=GEN)] = None,
        bad_words: Annotated[Optional[list[str]], Opt("--bad-word", help="Ban a word (repeatable).")] = None,
        stop_strings: Annotated[Optional[list[str]], Opt("--stop", help="Stop at this text (repeatable).")] = None,
        seed: Annotated[Optional[int], Opt(help="Seed torch before generating (sampling).")] = None,
        top: Annotated[int, Opt(help="Candidates kept per stage.")] = 10,
        chat: Annotated[bool, Opt("--chat", help="Apply the tokenizer's chat template.")] = False,
        device: Annotated[str, Opt(help="auto, cpu, cuda or cuda:N.")] = "auto",
        dtype: Annotated[str, Opt(help="auto, float32, bfloat16 or float16.")] = "auto",
        prefill_rows: Annotated[int, Opt(help="Prompt attention rows kept at prefill.")] = 64,
        json_lines: Annotated[bool, Opt("--json", help="Print one JSON object per token and exit.")] = False,
        headless: Annotated[bool, Opt("--headless", help="Print a table per token instead of the TUI.")] = False,
        attention: Annotated[bool, Opt("--attention", help="Include attention rows in --json output.")] = False,
        layers: Annotated[bool, Opt("--layers", help="Include each layer's logit lens in --json output.")] = False,
    ) -> None:
        _session(family, prompt, model, max_new_tokens, min_new_tokens, do_sample, temperature, top_k, top_p,
                 min_p, typical_p, repetition_penalty, no_repeat_ngram_size, bad_words, stop_strings, seed, top,
                 chat, device, dtype, prefill_rows, json_lines, headless, attention, layers)

    return command


app.command("llama", help="Step a decoder-only model (Llama, Mistral, Qwen2 ...). Default: SmolLM2-135M-Instruct.")(
    _command("llama"))
app.command("t5", help="Step an encoder-decoder T5 model. Default: lmscope's demo T5 (English to German).")(
    _command("t5"))


@app.command("fetch", help="Prepare the offline default Llama (first run: download and convert).")
def fetch() -> None:
    from lmscope.engine.defaults import ensure_default_llama

    folder = ensure_default_llama()
    print(folder)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input, with one line on stderr)."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="lmscope", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _fail("aborted", 130)
    except UserError as error:
        return _fail(first_line(error), 2)
    except Exception as error:  # noqa: BLE001 - the last line of defence against tracebacks
        if hasattr(error, "format_message"):  # typer's usage errors (unknown flag, bad number)
            return _fail(error.format_message(), 2)
        if os.environ.get("LMSCOPE_DEBUG"):
            raise
        return _fail(f"{type(error).__name__}: {first_line(error)} (set LMSCOPE_DEBUG=1 for the traceback)", 1)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"lmscope: error: {message}", file=sys.stderr)
    return code
