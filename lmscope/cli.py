"""The ``lmscope`` command: parse flags, build options, run the TUI or the headless printer.

torch, transformers and textual are imported inside the commands so ``lmscope --help`` is
instant. Bad input ends with one ``lmscope: error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import fields
from typing import Annotated, Optional

import typer

from lmscope.engine.errors import UserError, first_line
from lmscope.engine.quiet import quiet_libraries
from lmscope.engine.session import DEFAULT_PROMPTS, SessionOptions
from lmscope.engine.settings import GenerationSettings
from lmscope.streams import Terminated, quiet_progress_bars, say, signals_as_exceptions, takes_utf8

HELP_MIN_WIDTH = 50
"""The narrowest the help is drawn: click draws its plain-text help at least this wide too. At 0-5
columns (``COLUMNS=3``, a terminal that reports no size) rich drew one character per line."""


@contextmanager
def _help_width():
    """Around drawing the help: a width under :data:`HELP_MIN_WIDTH` is raised to it.

    rich takes the width from ``COLUMNS`` or the terminal when typer makes its console, so
    ``COLUMNS`` is set for that moment only; a wider terminal keeps its width.
    """
    from rich.console import Console

    before = os.environ.get("COLUMNS")
    if Console().width < HELP_MIN_WIDTH:
        os.environ["COLUMNS"] = str(HELP_MIN_WIDTH)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


class _HelpAtLeastMinWidth:
    """Draws a command's help at :func:`_help_width` (mixed into typer's command and group)."""

    def format_help(self, ctx, formatter) -> None:
        with _help_width():
            super().format_help(ctx, formatter)


class _Group(_HelpAtLeastMinWidth, typer.core.TyperGroup):
    """``lmscope``: typer's group, its help at least :data:`HELP_MIN_WIDTH` wide."""


class _Command(_HelpAtLeastMinWidth, typer.core.TyperCommand):
    """Each command: typer's command, its help at least :data:`HELP_MIN_WIDTH` wide."""


app = typer.Typer(
    cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Step through a language model's text generation one token at a time.",
)

GEN = "Generation (GenerationConfig names)"
Opt = typer.Option


def _session(family: str, flags: dict) -> None:
    """Build the session from the command's flags (the names of its parameters) and run it."""
    settings_names = {f.name for f in fields(GenerationSettings)}
    settings = GenerationSettings(**{
        name: tuple(value or ()) if name in ("bad_words", "stop_strings") else value
        for name, value in flags.items() if name in settings_names
    })
    json_lines, headless, attention = flags["json_lines"], flags["headless"], flags["attention"]
    prompt = flags["prompt"]
    options = SessionOptions(
        family=family, prompt=DEFAULT_PROMPTS[family] if prompt is None else prompt, model=flags["model"],
        settings=settings, device=flags["device"], dtype=flags["dtype"], top=flags["top"], chat=flags["chat"],
        capture_attention=attention or bool(flags["record"]) or not (json_lines or headless),
        prefill_rows=flags["prefill_rows"],
        breakpoints=tuple(flags["breakpoints"] or ()),
        # the TUI can step into any layer; a headless run reads the residual stream only for --layers
        layer_capture="full" if not (json_lines or headless) else "residual" if flags["layers"] else "off",
        device_map=flags["device_map"], max_memory=flags["max_memory"], offload_folder=flags["offload_folder"],
    )
    from lmscope.engine import distributed
    from lmscope.engine.checks import check_before_loading, check_output_flags, check_record_flags

    check_output_flags(json_lines, headless, attention, flags["layers"])
    check_record_flags(flags["record"], flags["record_dtype"])
    check_before_loading(options)
    if distributed.rank() > 0:  # under torchrun: follow rank 0's engine calls, print nothing
        raise typer.Exit(distributed.follow_session(options))
    with distributed.leading():
        _run(options, flags)


def _run(options: SessionOptions, flags: dict) -> None:
    """The TUI, or the headless printer for --json / --headless."""
    json_lines, headless, attention = flags["json_lines"], flags["headless"], flags["attention"]
    if json_lines or headless:
        quiet_libraries()  # what matters became lmscope's own checks and lines
        from lmscope.headless import run_headless

        with _printing():
            run_headless(options, json_lines=json_lines, attention=attention, record=flags["record"],
                         record_dtype=flags["record_dtype"], layers=flags["layers"])
    else:
        run_tui(options, record=flags["record"], record_dtype=flags["record_dtype"])


def run_tui(options: SessionOptions, record: str | None = None, record_dtype: str = "float32") -> None:
    """Open the TUI; the model loads in its worker thread while the app is already up."""
    from functools import partial

    from lmscope.engine.session import model_source
    from lmscope.tui.app import make_app

    # The first run of the default Llama downloads and converts it: do that here, with its
    # progress lines on the terminal (tqdm's bars are off: main), before Textual owns the screen.
    model_source(options)
    factory = partial(_quiet_open_session, options)
    if record:
        factory = _recording_factory(factory, options, record, record_dtype)
    _run_app(make_app(factory, title=f"lmscope {options.family}", record_path=record,
                      breakpoints=tuple(options.parsed_breakpoints()), top=options.top))


def _recording_factory(factory, options: SessionOptions, record: str, record_dtype: str):
    """The factory, recording what its engine produces (the file is created now: a bad path fails here)."""
    from lmscope.engine.recording import RecordingEngine
    from lmscope.engine.trace_writer import TraceWriter
    from lmscope.headless import options_dict

    writer = TraceWriter(record, record_dtype)
    return lambda: RecordingEngine(factory(), writer, options_dict(options))


def _run_app(tui) -> None:
    from lmscope.tui.signals import exit_on_signals

    _check_terminal()
    with exit_on_signals(tui):
        result = tui.run()
    # Loading failed, or the session ended with a failed step: the app has given the screen back,
    # and the error ends the command as it ends --headless (its one line, exit 2 or 1).
    if isinstance(result, BaseException):
        raise result
    if tui.return_code:  # 130 or 143: a signal ended the run at a step boundary
        raise typer.Exit(tui.return_code)


def _check_terminal() -> None:
    """Textual reads keys from stdin and draws on stderr: without a terminal on both, the app
    would draw into a file or a pipe and wait for keys that never come."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UserError("the TUI needs a terminal, and stdin or stderr is not one: print the steps with --json "
                        "or --headless instead (lmscope open also has --svg)")


class OutputClosed(Exception):
    """The reader of stdout went away (``lmscope ... --json | head``). Not an OSError: typer
    would turn a broken pipe into a bare exit 1 before :func:`main` could end quietly."""


@contextmanager
def _printing():
    """Around what prints the steps: a closed stdout ends the run quietly (:func:`main`)."""
    try:
        yield
    except BrokenPipeError as error:
        raise OutputClosed from error


def _quiet_open_session(options: SessionOptions):
    """open_session with transformers' progress bars and warnings off for the rest of the run, not
    only while it loads (as open_session has them): stderr is the app's screen."""
    from lmscope.engine.session import open_session

    quiet_libraries()
    return open_session(options)


RANK_ERROR_DELAY_S = 3.0
"""How long a rank other than 0 waits before printing its error (see ``_fail``)."""

RUN = "Run"
MODEL = "Model and device"
OUT = "Output"
DEBUG = "Debugger"


def _command(family: str):
    # The signature is the one list of flags: typer reads it, and the body passes it on whole.
    def command(
        prompt: Annotated[Optional[str], Opt("--prompt", "-p", metavar="TEXT", rich_help_panel=RUN,
                                             help="Text to generate from.")] = None,
        chat: Annotated[bool, Opt("--chat", metavar="", rich_help_panel=RUN,
                                  help="Apply the tokenizer's chat template.")] = False,
        model: Annotated[Optional[str], Opt("--model", metavar="ID_OR_PATH", rich_help_panel=MODEL,
                                            help="Hub id or local folder (default: the offline default).")] = None,
        device: Annotated[str, Opt("--device", metavar="DEVICE", rich_help_panel=MODEL,
                                   help="auto, cpu, cuda or cuda:N.")] = "auto",
        dtype: Annotated[str, Opt("--dtype", metavar="DTYPE", rich_help_panel=MODEL,
                                  help="auto, float32, bfloat16 or float16.")] = "auto",
        device_map: Annotated[Optional[str], Opt("--device-map", metavar="MAP", rich_help_panel=MODEL,
                                                 help="Spread layers over devices with accelerate: auto, balanced "
                                                      "or sequential.")] = None,
        max_memory: Annotated[Optional[str], Opt("--max-memory", metavar="BUDGET", rich_help_panel=MODEL,
                                                 help="With --device-map: e.g. cpu=20GB,cuda:0=10GB.")] = None,
        offload_folder: Annotated[Optional[str], Opt("--offload-folder", metavar="DIR", rich_help_panel=MODEL,
                                                     help="With --device-map: where layers offloaded "
                                                          "to disk go.")] = None,
        max_new_tokens: Annotated[int, Opt("--max-new-tokens", metavar="N", rich_help_panel=GEN)] = 32,
        min_new_tokens: Annotated[Optional[int], Opt("--min-new-tokens", metavar="N", rich_help_panel=GEN)] = None,
        do_sample: Annotated[bool, Opt("--do-sample", metavar="", rich_help_panel=GEN,
                                       help="Sample instead of argmax.")] = False,
        temperature: Annotated[Optional[float], Opt("--temperature", metavar="T", rich_help_panel=GEN)] = None,
        top_k: Annotated[Optional[int], Opt("--top-k", metavar="K", rich_help_panel=GEN)] = None,
        top_p: Annotated[Optional[float], Opt("--top-p", metavar="P", rich_help_panel=GEN)] = None,
        min_p: Annotated[Optional[float], Opt("--min-p", metavar="P", rich_help_panel=GEN)] = None,
        typical_p: Annotated[Optional[float], Opt("--typical-p", metavar="P", rich_help_panel=GEN)] = None,
        repetition_penalty: Annotated[Optional[float], Opt("--repetition-penalty", metavar="R",
                                                           rich_help_panel=GEN)] = None,
        no_repeat_ngram_size: Annotated[Optional[int], Opt("--no-repeat-ngram-size", metavar="N",
                                                           rich_help_panel=GEN)] = None,
        bad_words: Annotated[Optional[list[str]], Opt("--bad-word", metavar="WORD", rich_help_panel=GEN,
                                                      help="Ban a word (repeatable).")] = None,
        stop_strings: Annotated[Optional[list[str]], Opt("--stop", metavar="TEXT", rich_help_panel=GEN,
                                                         help="Stop once this text appears (repeatable).")] = None,
        seed: Annotated[Optional[int], Opt("--seed", metavar="S", rich_help_panel=GEN,
                                           help="Seed torch before generating (sampling).")] = None,
        breakpoints: Annotated[Optional[list[str]], Opt("--break", metavar="EXPR", rich_help_panel=DEBUG,
                                                        help="Stop after the first step where EXPR holds, e.g. "
                                                             "'p < 0.3 or flip' (repeatable).")] = None,
        top: Annotated[int, Opt("--top", metavar="N", rich_help_panel=DEBUG, help="Candidates kept per stage.")] = 10,
        prefill_rows: Annotated[int, Opt("--prefill-rows", metavar="N", rich_help_panel=DEBUG,
                                         help="Prompt attention rows kept at prefill.")] = 64,
        json_lines: Annotated[bool, Opt("--json", metavar="", rich_help_panel=OUT,
                                        help="Print one JSON object per token and exit.")] = False,
        headless: Annotated[bool, Opt("--headless", metavar="", rich_help_panel=OUT,
                                      help="Print a table per token instead of the TUI.")] = False,
        attention: Annotated[bool, Opt("--attention", metavar="", rich_help_panel=OUT,
                                       help="Include attention rows in --json output.")] = False,
        layers: Annotated[bool, Opt("--layers", metavar="", rich_help_panel=OUT,
                                    help="Include each layer's logit lens in --json output.")] = False,
        record: Annotated[Optional[str], Opt("--record", metavar="FILE", rich_help_panel=OUT,
                                             help="Write the session to FILE as it runs (lmscope open FILE).")] = None,
        record_dtype: Annotated[str, Opt("--record-dtype", metavar="DTYPE", rich_help_panel=OUT,
                                         help="float32 or float16 (half the size) for recorded rows.")] = "float32",
    ) -> None:
        _session(family, dict(locals()))

    return command


EXAMPLES = {
    "llama": "lmscope llama --chat -p 'What is the capital of France?' --break 'p < 0.5'",
    "t5": "lmscope t5 -p 'today the old king has found a red ball' --json",
}


app.command("llama", help="Step a decoder-only model (Llama, Mistral, Qwen2 ...). Default: SmolLM2-135M-Instruct.",
            cls=_Command, epilog=f"Example: {EXAMPLES['llama']}")(_command("llama"))
app.command("t5", help="Step an encoder-decoder T5 model. Default: lmscope's demo T5 (English to German).",
            cls=_Command, epilog=f"Example: {EXAMPLES['t5']}")(_command("t5"))


@app.command("open", cls=_Command, help="Open a session recorded with --record: the TUI, --json or --headless.",
             epilog="Example: lmscope open run.lmscope --json --attention")
def open_trace(
    file: Annotated[str, typer.Argument(metavar="FILE", help="A file written by --record.")],
    json_lines: Annotated[bool, Opt("--json", metavar="", help="Print the JSON lines the live run printed.")] = False,
    headless: Annotated[bool, Opt("--headless", metavar="", help="Print the per-step table.")] = False,
    attention: Annotated[bool, Opt("--attention", metavar="", help="Include attention rows in --json.")] = False,
    layers: Annotated[bool, Opt("--layers", metavar="",
                                help="Include the recorded logit lens of each layer in --json.")] = False,
    svg: Annotated[Optional[str], Opt("--svg", metavar="OUT.svg", help="Save one screen as SVG and exit.")] = None,
    step: Annotated[Optional[int], Opt("--step", metavar="N", help="With --svg: the step to show.")] = None,
    tab: Annotated[Optional[str], Opt("--tab", metavar="TAB",
                                      help="With --svg: attention (default), cross, kv, variables or layers.")] = None,
    size: Annotated[Optional[str], Opt("--size", metavar="COLSxROWS",
                                       help="With --svg: the terminal size, 120x40 (default) up to 500x200.")] = None,
) -> None:
    # --tab and --size default to None, not their values: given without --svg they are refused.
    _check_open_flags(json_lines, headless, attention, svg, layers, step=step, tab=tab, size=size)
    if svg is not None:
        from lmscope.tui.screenshot import DEFAULT_SIZE, DEFAULT_TAB, check_svg_options

        tab, size = DEFAULT_TAB if tab is None else tab, DEFAULT_SIZE if size is None else size
        target = check_svg_options(svg, file, tab, size)  # before the trace is read and the screen rendered
    with _no_collections():
        from lmscope.engine.recording import ReplayEngine
        from lmscope.engine.trace_reader import Trace

        trace = Trace(file)
        if svg is None and not json_lines and not headless:
            from lmscope.tui.app import make_app
    if trace.tail_notice and (svg is not None or json_lines or headless):  # the TUI notifies instead
        say(f"lmscope: warning: {file!r}: {trace.tail_notice}")
    if svg is not None:
        from lmscope.tui.screenshot import render_svg

        written = render_svg(ReplayEngine(trace), target, step=step, tab=tab, size=size)
        if written is not None:  # with --svg -, stdout holds the SVG and nothing else
            print(written)
        return
    if json_lines or headless:
        from lmscope.headless import lens_notice, no_steps_notice, print_trace

        # no lens at all: one line, before any step; no step at all: the one line says why nothing follows
        notice = (lens_notice(trace) if layers else "") or no_steps_notice(trace)
        if notice:
            say(f"lmscope: warning: {file!r}: {notice}")
        with _printing():
            print_trace(trace, json_lines=json_lines, attention=attention, layers=layers)
        return
    engine = ReplayEngine(trace)
    _run_app(make_app(lambda: engine, title=f"lmscope open {trace.path.name}"))


def _check_open_flags(json_lines: bool, headless: bool, attention: bool, svg: str | None, layers: bool = False,
                      **svg_only) -> None:
    """Refuse ``open``'s flags that contradict each other or that its output would ignore."""
    if sum((json_lines, headless, svg is not None)) > 1:
        raise UserError("--json, --headless and --svg are different outputs: choose one")
    if attention and not json_lines:
        raise UserError("--attention adds attention rows to --json output: pass --json too")
    if layers and not json_lines:  # the live command's rule (checks.check_output_flags)
        raise UserError("--layers adds each layer's logit lens to --json output: pass --json too")
    given = [f"--{name}" for name, value in svg_only.items() if value is not None]
    if given and svg is None:
        names = given[0] if len(given) == 1 else f"{', '.join(given[:-1])} and {given[-1]}"
        verb = "chooses" if len(given) == 1 else "choose"
        raise UserError(f"{names} {verb} what --svg renders: pass --svg OUT.svg too")


@app.command("fetch", cls=_Command, help="Prepare the offline default Llama (first run: download and convert).")
def fetch() -> None:
    from lmscope.engine.checks import check_cache_writable
    from lmscope.engine.defaults import cache_dir, ensure_default_llama

    check_cache_writable(cache_dir())
    folder = ensure_default_llama()
    print(folder)


@contextmanager
def _no_collections():
    """No automatic garbage collection inside: for imports, whose objects all live on.

    Importing numpy, Textual and the app makes ~40k objects that live as long as the process:
    the ~130 collections they set off found nothing and took 40-70 ms of the second that
    ``lmscope open`` has for its first frame (the 2-core machine).
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()  # later collections skip them too (until the app collects once it is loaded)
        gc.enable()


_OPEN_OPTIONS = {"--json": ("json_lines", bool), "--headless": ("headless", bool), "--attention": ("attention", bool),
                 "--layers": ("layers", bool), "--svg": ("svg", str), "--step": ("step", int), "--tab": ("tab", str), "--size": ("size", str)}
"""``lmscope open``'s options by flag: the parameter and its type (tests check them against typer's)."""


def _open_arguments(args: list[str]) -> dict | None:
    """``open_trace``'s arguments for a plain ``lmscope open FILE [options]``, else None.

    Typer builds every command and a pydantic adapter for each of the command's parameters
    before calling it: 60-140 ms on the 2-core machine, a tenth of the second that
    ``lmscope open`` has for its first frame. Plain flags are read here instead; anything
    else (``--help``, an unknown or repeated flag, a missing or bad value) goes to typer, which
    says what is wrong.
    """
    if args[:1] != ["open"]:
        return None
    values: dict = {}
    rest = iter(args[1:])
    for arg in rest:
        flag, equals, text = arg.partition("=")
        if flag in _OPEN_OPTIONS:
            name, kind = _OPEN_OPTIONS[flag]
            if name in values or (kind is bool and equals):
                return None
            if kind is not bool and not equals:
                text = next(rest, "-")  # a value that looks like a flag is typer's to judge
                if text.startswith("-"):
                    return None
            # ASCII digits only: int() also reads '٣' (and isdigit() passes it), which typer refuses;
            # one minus at most: lstrip("-") passed '--1', and int() failed on it (exit 1)
            if kind is int and not (text.removeprefix("-").isdigit() and text.isascii()):
                return None
            values[name] = True if kind is bool else kind(text)
        elif arg.startswith("-") or "file" in values:
            return None
        else:
            values["file"] = arg
    return values if "file" in values else None


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input, with one line on stderr)."""
    _escape_what_the_terminal_cannot_show()
    # Before anything imports torch (and with it tqdm): no third-party progress bars, neither
    # over the TUI nor in the first run's conversion, whichever command makes it.
    quiet_progress_bars()
    frozen_before = gc.get_freeze_count()
    try:
        with signals_as_exceptions():
            return _main(argv)
    finally:
        if not frozen_before:  # what ``open`` froze for its run (_no_collections) is the caller's garbage again
            gc.unfreeze()


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        opening = _open_arguments(args)
        if opening is not None:
            open_trace(**opening)
            code = 0
        else:
            # Out of standalone mode typer returns the code of an Exit (a signal's 130 or 143,
            # Ctrl+C during a headless run) instead of raising it.
            code = typer.main.get_command(app).main(args=argv, prog_name="lmscope", standalone_mode=False)
        sys.stdout.flush()  # here, where a closed pipe can still end quietly, not at the interpreter's exit
        return code if isinstance(code, int) else 0
    except typer.Exit as done:
        return done.exit_code
    except (OutputClosed, BrokenPipeError):
        return _output_closed()
    except SystemExit as done:
        # rich and typer meet a closed pipe while they print (the help: `lmscope llama -h |
        # head -1`) by exiting 1 themselves, from inside the BrokenPipeError's handling.
        if isinstance(done.__context__, BrokenPipeError):
            return _output_closed()
        raise
    except (typer.Abort, KeyboardInterrupt):
        return _fail("aborted", 130)
    except Terminated:
        return SIGTERM_EXIT  # quietly, as SIGTERM's default action ends a process (torchrun ends ranks so)
    except UserError as error:
        return _fail(first_line(error), 2)
    except Exception as error:  # noqa: BLE001 - the last line of defence against tracebacks
        if type(error).__name__ == "NoArgsIsHelpError":  # plain `lmscope`: typer has printed the help
            if error.format_message():  # (a plain-text help is in the message instead)
                print(error.format_message())
            return 0
        if hasattr(error, "format_message"):  # typer's usage errors (unknown flag, bad number)
            return _fail(_usage_line(error, args), 2)
        if os.environ.get("LMSCOPE_DEBUG"):
            raise
        return _fail(f"{type(error).__name__}: {first_line(error)} (set LMSCOPE_DEBUG=1 for the traceback)", 1)


def _usage_line(error, args: list[str]) -> str:
    """click's error in one line; a usage error (an unknown flag, a bad number, a missing FILE)
    with what to do, click's own hint: its standalone mode prints ``Try 'lmscope t5 -h' for
    help.`` on a line of its own, which was lost here.

    A usage error is told by its class's name: typer 0.29 raises its own copy of click's
    exceptions, which are not ``click.UsageError``. Some (a flag without its value) come without
    the context that names the command: ``args`` names it then.
    """
    message = error.format_message() or type(error).__name__
    if not any(kind.__name__ == "UsageError" for kind in type(error).__mro__):
        return message
    ctx = getattr(error, "ctx", None)
    command = ctx.command_path if ctx is not None else _command_path(args)
    return f"{message.rstrip('.')}; try '{command} --help' for help"  # -h works too; --help says what it is


def _command_path(args: list[str]) -> str:
    """``lmscope`` and the command ``args`` start with, if they start with one."""
    commands = {info.name for info in app.registered_commands}
    return f"lmscope {args[0]}" if args[:1] and args[0] in commands else "lmscope"


def _escape_what_the_terminal_cannot_show() -> None:
    """Where stdout or stderr does not take UTF-8 (``PYTHONIOENCODING=latin-1``, a C locale with
    UTF-8 mode off), a token like ' Tür' is written as ' T\\xfcr' instead of ending the run with a
    UnicodeEncodeError; ``--json`` escapes it as JSON does (``headless.json_line``)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and not takes_utf8(stream):
            stream.reconfigure(errors="backslashreplace")


SIGTERM_EXIT = 143
"""128 + SIGTERM: how a shell reports a process that SIGTERM ended."""

SIGPIPE_EXIT = 141
"""128 + SIGPIPE: how a shell reports a command whose reader closed the pipe (``yes | head``)."""


def _output_closed() -> int:
    """Whoever read stdout has stopped: end quietly, as ``cat`` or ``grep`` would, and point stdout
    at /dev/null so the interpreter's last flush does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout without a file descriptor (a test's capture)
        pass
    return SIGPIPE_EXIT


def _fail(message: str, code: int) -> int:
    from lmscope.engine.distributed import rank

    if rank() > 0:
        # Under torchrun every rank usually meets the same error, and rank 0 says it. Waiting lets
        # rank 0's line come first: torchrun then ends this rank before it repeats it. An error of
        # this rank's own is still printed, with its rank, and its exit ends the others.
        time.sleep(RANK_ERROR_DELAY_S)
    where = f"rank {rank()}: " if rank() > 0 else ""
    say(f"lmscope: error: {where}{message}")  # the user's text in it may hold terminal escapes
    return code
