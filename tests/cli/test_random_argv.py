"""Seeded random command lines and ``--break`` conditions: whatever a user types ends with exit 0,
or with exit 2 and one ``lmscope: error:`` line, never a traceback or exit 1.

The flags come from typer's command objects, so a new flag is fuzzed from the day it is added
(with the generic values of its type until it gets a pool of its own in :func:`pools`). Each
case runs ``lmscope.cli.main`` in this process on the tiny models (``tests/tiny_models.py``),
with ``--json`` or ``--headless`` and a few new tokens.

A failure prints the seed, the case's number and its argv. To reproduce one case:
``LMSCOPE_FUZZ_SEED=<seed> pytest tests/cli/test_random_argv.py -m slow -k seeded``, or call
``main(argv)`` with the argv printed (the paths in it are under the test's ``tmp_path``).
The slow tests take their seeds from ``LMSCOPE_FUZZ_SEED`` (comma-separated) and their number of
cases from ``LMSCOPE_FUZZ_CASES``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer

from lmscope import cli
from lmscope.engine.breakpoints import FIELDS, parse, step_values
from lmscope.engine.errors import UserError
from lmscope.testing import make_session, write_trace

WARNING = "lmscope: warning: "
ERROR = "lmscope: error: "


def command_params(name: str) -> list:
    """The options (and arguments) of ``lmscope NAME``, as typer built them."""
    return typer.main.get_command(cli.app).commands[name].params


def kind_of(param) -> str:
    """``bool``, ``int``, ``float``, ``str`` or ``list`` (a repeatable option) for a parameter."""
    if getattr(param, "multiple", False):
        return "list"
    annotation = param.type_descriptor.annotation
    return annotation.__name__ if isinstance(annotation, type) else "str"


# -- values ------------------------------------------------------------------------------------

TEXT_POOL = [
    "", " ", "   ", "\t", "\n", " \n ", "x", "the", "the quick brown fox", "Tür", "東京", "👍", "\u00a0",
    "\x1b[31m", "\x07", "\x7f", "\u009b", "\u202e", "\udcff", "a\udc80b", "-", "--", "-x", "--json", "a=b", "=",
    "'", '"', "\\", "%s", "{}", "$HOME", "~", ".", "..", "/", "a" * 300, "\u0663", "\uff13",
]
"""Text of every kind argv can hold (no NUL: a process's argv cannot; lone surrogates only as
PEP 383 makes them, U+DC80-U+DCFF, from bytes that are not UTF-8)."""

NUMBER_POOL = [
    "0", "1", "2", "3", "-1", "-0", "+2", "007", "1.5", "0.5", "-0.5", "1e-45", "1e-30", "1e30", "1e400", "-1e400",
    "nan", "-nan", "NaN", "inf", "-inf", "Infinity", "1_000", "1__0", "_1", "0x10", "1e3", "2.", ".5",
    str(2**31), str(2**63), str(2**64), str(-(2**63) - 1), "9" * 40, "-" + "9" * 40, " 1", "1 ", "\u0663", "\uff13",
    "\u00b2", "", " ", "one", "--1", "---1", "-+1", "+-1", "--0",
]
"""Numbers of every kind, and a few that are not numbers."""


@dataclass
class Sandbox:
    """Paths the values point at, all under the test's own folder; ``precious`` must never change."""

    root: Path
    llama: Path
    t5: Path
    traces: dict[str, Path]
    precious: dict[Path, str] = field(default_factory=dict)
    values: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """:func:`pools` by family."""

    def snapshot(self) -> dict[Path, str]:
        return {path: _digest(path) for path in self.precious}


def _digest(path: Path) -> str:
    if path.is_dir():
        return "|".join(f"{p.name}:{_digest(p)}" for p in sorted(path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"


def make_sandbox(root: Path, llama: Path, t5: Path) -> Sandbox:
    """Copies of the tiny models (a case may point ``--offload-folder`` or ``--record`` into them),
    recordings, and files and folders of the wrong kind."""
    root.mkdir(parents=True, exist_ok=True)
    box = Sandbox(root, root / "llama", root / "t5", {})
    shutil.copytree(llama, box.llama)
    shutil.copytree(t5, box.t5)
    (root / "empty-folder").mkdir()
    (root / "notes.txt").write_text("notes " * 20)
    (root / "empty.lmscope").write_bytes(b"")
    (root / "picture.svg").write_text("<svg></svg>")
    for name, session in {"llama": make_session("llama", steps=4), "t5": make_session("t5", steps=3),
                          "prompt-only": make_session("t5", steps=0)}.items():
        box.traces[name] = root / f"{name}.lmscope"
        write_trace(box.traces[name], session)
    shutil.copy(box.traces["llama"], root / "rec.lmscope")  # --record may write over it: it is a recording
    cut = root / "cut.lmscope"
    cut.write_bytes(box.traces["llama"].read_bytes()[:-10])
    box.traces["cut"] = cut
    # not picture.svg: --svg writes over an SVG, as --record over a recording
    box.precious = {p: "" for p in (box.llama, box.t5, root / "notes.txt", *box.traces.values())}
    box.values = {family: pools(box, family) for family in ("llama", "t5")}
    return box


def path_pool(box: Sandbox, traces: bool = True) -> list[str]:
    """Paths: missing, folders, files of the wrong kind, system places, long and looping names;
    ``traces``: the recordings that ``open`` reads too (not for ``--record``, which may write
    over a recording: lmscope writes over its own files)."""
    loop = box.root / "loop1"
    if not loop.is_symlink():
        loop.symlink_to(box.root / "loop2")
        (box.root / "loop2").symlink_to(loop)
    root = str(box.root)
    return [
        f"{root}/missing", f"{root}/no-folder/x", root, f"{root}/empty-folder", f"{root}/notes.txt",
        f"{root}/empty.lmscope", f"{root}/picture.svg", *([str(box.traces["llama"]), str(box.traces["cut"])] if traces else []),
        str(box.llama), f"{root}/loop1", f"{root}/loop1/x", f"{root}/{'y' * 300}", "y" * 5000, "/dev/null", "/dev/zero",
        "/proc/version", "/proc/x", "/sys/x", "/", "", " ", "relative-new-file", "my file ", "\x1b[31m.x", "a\udcffb",
        f"{root}/notes.txt/x",
    ]


def pools(box: Sandbox, family: str) -> dict[str, list[str]]:
    """Values by parameter name: the valid ones first, then the likely mistakes."""
    paths = path_pool(box)
    other = box.t5 if family == "llama" else box.llama
    max_new_tokens = ["1", "2", "3", "300", "0", "-1", *NUMBER_POOL]
    if family == "t5":
        max_new_tokens = _at_most(T5_MAX_NEW_TOKENS, max_new_tokens)
    return {
        "bounded": ["max_new_tokens"] if family == "t5" else [],
        "prompt": ["the quick brown fox", "der Hund", " ", "\n", "Tür 東京 👍", "the " * 300, "", "a\udcffb",
                   "\x1b[2J", "-p"],
        "model": [str(box.llama if family == "llama" else box.t5), str(other), "", " ", "no-such-org/no-such-model",
                  "gpt2", "\x1b[31m", *paths],
        "device": ["auto", "cpu", "cuda", "cuda:0", "cuda:-1", "cuda:x", "cuda:01", "cuda:\u0663", "cuda:\u00b2",
                   "CPU", "cpu:0", "mps", "meta", "tpu", ""],
        "dtype": ["auto", "float32", "bfloat16", "float16", "float64", "int8", "FLOAT32", "torch.float32", ""],
        "device_map": ["auto", "balanced", "sequential", "balanced_low_0", "cpu", "{}", "disk", ""],
        "max_memory": ["cpu=1GiB", "cpu=20GB,cuda:0=10GB", "cpu=0GiB", "cpu=0", "cpu=", "=", ",", "cpu=-1GiB",
                       "cpu=nanGiB", "cpu=infGiB", "cpu=1e999GiB", "cpu=1 GiB", " cpu = 1GiB ", "cpu=\u0663GiB", "\u0663=1GiB",
                       "cuda:01=1GiB", "cpu=1GiB,cpu=2GiB", "disk=1GiB", "gpu=1GiB", "0=1GiB", "x"],
        "offload_folder": [f"{box.root}/offload", *paths],
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": ["0", "1", "2", "5", *NUMBER_POOL],
        "temperature": ["0.7", "1", "1.5", "1e-30", "3.4e38", "3.5e38", *NUMBER_POOL],
        "top_k": ["0", "1", "5", "50", "1000000", *NUMBER_POOL],
        "top_p": ["0.9", "1", "1e-9", "1.5", *NUMBER_POOL],
        "min_p": ["0", "0.05", "1", *NUMBER_POOL],
        "typical_p": ["0.9", "1", "1e-9", *NUMBER_POOL],
        "repetition_penalty": ["1.2", "1", "0.5", "1e-30", "1e30", "1e31", *NUMBER_POOL],
        "no_repeat_ngram_size": ["0", "1", "2", "3", "1000", *NUMBER_POOL],
        "bad_words": ["the", "fox", "zzqxj", "</s>", "<s>", "<unk>", "<pad>", *TEXT_POOL],
        "stop_strings": ["the", "fox", " ", "e", "</s>", *TEXT_POOL],
        "seed": ["0", "1", "42", str(2**64 - 1), *NUMBER_POOL],
        "breakpoints": [random_break(random.Random(i)) for i in range(12)],
        "top": ["1", "2", "5", "10", "100000", *NUMBER_POOL],
        "prefill_rows": ["0", "1", "64", "100000", *NUMBER_POOL],
        "record": [f"{box.root}/new.lmscope", f"{box.root}/rec.lmscope", *path_pool(box, traces=False)],
        "record_dtype": ["float32", "float16", "bfloat16", "int8", ""],
        # lmscope open
        # the made-up recordings, then those the live cases write (--record), once they exist
        "file": [*(str(p) for p in box.traces.values()), f"{box.root}/rec.lmscope", f"{box.root}/new.lmscope",
                 f"{box.root}/valid-0.lmscope", *paths],
        "svg": [f"{box.root}/o.svg", "-", *paths],
        "step": ["0", "1", "3", "100", "-1", *NUMBER_POOL],
        "tab": ["attention", "cross", "kv", "variables", "layers", "Attention", "heads", "", *TEXT_POOL[:6]],
        "size": ["120x40", "80x24", "500x200", "501x200", "1x1", "0x0", "10x5", "x", "120X40", "-1x40", "120x",
                 "\uff11\uff12\uff10x40", "120x40x2", " 120x40", "1e2x40", ""],
    }


def _at_most(limit: int, texts: list[str]) -> list[str]:
    """``texts`` without the numbers above ``limit``, read as typer reads them."""
    def small(text: str) -> bool:
        try:
            return int(text) <= limit
        except ValueError:
            return True
    return [text for text in texts if small(text)]


T5_MAX_NEW_TOKENS = 64
"""T5's positions are relative: unlike the tiny Llama's 256, nothing bounds its run, and
``--max-new-tokens 9999999999`` generates for hours, as asked. Its pool stays under this."""


def value_for(rng: random.Random, param, values: dict[str, list[str]]) -> str:
    """A value for ``param``: from its own pool mostly, now and then from its type's generic one
    (never for a parameter the pools name ``bounded``: see :data:`T5_MAX_NEW_TOKENS`)."""
    own = values.get(param.name)
    generic = NUMBER_POOL if kind_of(param) in ("int", "float") else TEXT_POOL
    if own and (rng.random() < 0.8 or param.name in values.get("bounded", ())):
        return rng.choice(own[:3] if rng.random() < 0.3 else own)
    return rng.choice(generic)


# -- breakpoint conditions -------------------------------------------------------------------

NUMBER_FIELDS = [name for name, (kind, _) in FIELDS.items() if kind == "number"]
STRING_FIELDS = [name for name, (kind, _) in FIELDS.items() if kind == "string"]
BOOL_FIELDS = [name for name, (kind, _) in FIELDS.items() if kind == "bool"]
BREAK_NUMBERS = ["0", "1", "-1", "0.3", "1e-4", ".5", "1.", "2", "5", "100", "1e999", "-0", "9" * 30, "1E+2"]
BREAK_STRINGS = ["'a'", '"the"', "'^ (der|die|das)$'", "''", "'\\d+'", "'(?i)THE'", "' '", "'[a-z]+'", "'.'",
                 "'\\''", '"\\""', "'Tür'", "'\\x1b'", "'$'", "'^'", "'(a|b)*c'", "'\\\\'"]
BAD_PATTERNS = ["'['", "'(?P<x'", "'a{4294967296}'", "'*'", "'\\'", "'(?<=a+)b'", "'\\p{L}'"]
GARBAGE = ["@", "$", "!", "=", "&&", "||", "&", "|", "?", ":", ",", ";", "+", "*", "/", "%", "[", "]", "{", "}",
           "é", "\udcff", "\x1b", "\u00a0", "\u0663", "'", '"', "\\", "`", "#", "not_a_field", "AND", "Or", "True",
           "None", "p.x", "0x1", "1_0", "--", "- 1", "=<", "=>", "<>", "!", "~~", "===", "\t", "\n", "\u2028"]
OPERATORS = ["<", "<=", ">", ">=", "==", "!=", "~"]


def random_condition(rng: random.Random, depth: int = 0) -> str:
    """A well-typed condition: it must parse, and hold or not at every step."""
    choice = rng.random() if depth < 4 else rng.random() * 0.55
    if choice < 0.2:
        name = rng.choice(NUMBER_FIELDS)
        return f"{name} {rng.choice(OPERATORS[:6])} {rng.choice(BREAK_NUMBERS)}"
    if choice < 0.3:
        return f"{rng.choice(BREAK_NUMBERS)} {rng.choice(OPERATORS[:6])} {rng.choice(NUMBER_FIELDS)}"
    if choice < 0.4:
        return f"{rng.choice(STRING_FIELDS)} {rng.choice(['==', '!='])} {rng.choice(BREAK_STRINGS)}"
    if choice < 0.5:
        return f"{rng.choice(STRING_FIELDS)} ~ {rng.choice(BREAK_STRINGS)}"
    if choice < 0.55:
        return rng.choice([*BOOL_FIELDS, "true", "false", "flip == true", "flip != flip"])
    if choice < 0.65:
        return f"not {random_condition(rng, depth + 1)}"
    if choice < 0.75:
        return f"({random_condition(rng, depth + 1)})"
    joiner = rng.choice([" and ", " or ", " and not "])
    return joiner.join(random_condition(rng, depth + 1) for _ in range(rng.randint(2, 4)))


def random_soup(rng: random.Random) -> str:
    """Tokens of the language (and garbage) in any order: most do not parse, some do."""
    atoms = [*FIELDS, "and", "or", "not", "(", ")", "true", "false", *OPERATORS, *BREAK_NUMBERS, *BREAK_STRINGS,
             *BAD_PATTERNS, *GARBAGE]
    return "".join(rng.choice(atoms) + rng.choice([" ", " ", "", "  ", "\t"]) for _ in range(rng.randint(1, 10)))


def random_break(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.35:
        return random_condition(rng)
    if roll < 0.75:
        return random_soup(rng)
    if roll < 0.85:  # deep nesting around the limit (50), and far beyond it
        depth = rng.choice([rng.randint(45, 55), 500, 5000])
        inner = random_condition(rng)
        return ("(" * depth + inner + ")" * depth) if rng.random() < 0.6 else ("not " * depth + inner)
    if roll < 0.9:  # unbalanced
        return "(" * rng.randint(1, 60) + random_condition(rng) + ")" * rng.randint(0, 60)
    if roll < 0.95:  # very long
        return " or ".join(random_condition(rng) for _ in range(rng.randint(200, 2000)))
    return rng.choice(STRING_FIELDS) + " ~ '" + rng.choice(["a" * 100000, "(" * 200 + ")" * 200, "x{1,65535}",
                                                            "\\" * 3 + "'"]) + "'"


# -- a case ----------------------------------------------------------------------------------

@dataclass
class Case:
    argv: list[str]
    must_succeed: bool = False
    """A valid combination: anything but exit 0 is a defect."""

    def json_lines(self) -> bool:
        """Whether the command line asks for ``--json`` (as typer reads it: ``--prompt --json`` does not)."""
        command = typer.main.get_command(cli.app).commands[self.argv[0]]
        return bool(command.make_context(self.argv[0], list(self.argv[1:])).params.get("json_lines"))


def _flag(param) -> str:
    return max(param.opts, key=len)


def random_case(rng: random.Random, box: Sandbox) -> Case:
    """A random command line of ``llama``, ``t5`` or ``open``."""
    family = rng.choice(["llama", "t5", "open"])
    return random_open(rng, box) if family == "open" else random_live(rng, box, family)


def _option_groups(rng: random.Random, params: list, values: dict[str, list[str]], count: int) -> list[list[str]]:
    """``count`` option groups: a flag alone, ``--flag VALUE``, ``--flag=VALUE``, a short alias."""
    groups = []
    for _ in range(count):
        param = rng.choice(params)
        if kind_of(param) == "bool":
            groups.append([rng.choice(param.opts)] if rng.random() < 0.95 else [f"{_flag(param)}={rng.choice(['', '1', 'true'])}"])
            continue
        value = value_for(rng, param, values)
        opt = rng.choice(param.opts)
        joined = rng.random() < (0.7 if value.startswith("-") else 0.3)  # else a flag to click, mostly
        groups.append([f"{opt}={value}"] if opt.startswith("--") and joined else [opt, value])
    return groups


def _oddities(rng: random.Random, params: list) -> list[list[str]]:
    """Now and then: an unknown flag, a stray argument, a ``--``, a flag whose value is missing."""
    odd = []
    if rng.random() < 0.05:
        odd.append([rng.choice(["--bogus", "-x", "--max-new-token", "--jso", "--JSON", "---json", "-", "extra"])])
    if rng.random() < 0.03:
        odd.append(["--"])
    return odd


def _missing_value(rng: random.Random, params: list) -> list[str]:
    """A flag that takes a value, last on the line, without it (5% of cases)."""
    valued = [p for p in params if kind_of(p) != "bool" and p.opts[0].startswith("-")]
    return [rng.choice(rng.choice(valued).opts)] if rng.random() < 0.05 else []


def random_live(rng: random.Random, box: Sandbox, family: str) -> Case:
    params = [p for p in command_params(family) if p.name != "model" or rng.random() < 0.3]
    values = box.values[family]
    model = box.llama if family == "llama" else box.t5
    output = rng.choice([["--json"], ["--json"], ["--headless"]])
    groups = [["--model", str(model)], output, ["--max-new-tokens", str(rng.randint(1, 4))],
              *_option_groups(rng, params, values, rng.choice([0, 1, 1, 2, 2, 3, 4, 6])), *_oddities(rng, params)]
    if rng.random() < 0.3:
        groups.append(["--do-sample"])  # so sampling flags are not all refused for the lack of it
    if rng.random() < 0.1:
        groups.append(["--max-new-tokens", str(rng.randint(1, 4))])  # again: the last one counts
    groups = [groups[0], *rng.sample(groups[1:], len(groups) - 1)]
    return Case([family, *(arg for group in groups for arg in group), *_missing_value(rng, params)])


def random_open(rng: random.Random, box: Sandbox) -> Case:
    params = [p for p in command_params("open") if p.name != "file"]
    values = box.values["llama"]
    file = rng.choice(values["file"][:8] if rng.random() < 0.6 else values["file"])
    output = rng.choice([["--json"], ["--headless"], ["--svg", f"{box.root}/o.svg"], ["--json"]])
    if output[0] == "--svg" and rng.random() < 0.5:
        output = []  # an --svg may come from the pool
    groups = [[file], output, *_option_groups(rng, params, values, rng.choice([0, 1, 1, 2, 3])),
              *_oddities(rng, params)]
    if not any(arg in ("--json", "--headless", "--svg") or arg.startswith("--svg=") for g in groups for arg in g):
        groups.append(["--json"])  # never the TUI (it would be refused all the same: no terminal here)
    rng.shuffle(groups)
    return Case(["open", *(arg for group in groups for arg in group), *_missing_value(rng, params)])


# -- valid combinations, which must succeed ---------------------------------------------------

def valid_case(rng: random.Random, box: Sandbox) -> Case:
    """Flags that make sense together, in random forms and orders: exit 0 is the only right outcome."""
    family = rng.choice(["llama", "t5"])
    model = box.llama if family == "llama" else box.t5
    max_new = rng.randint(1, 4)
    json_out = rng.random() < 0.7
    options: list[tuple[str, str | None]] = [("--model", str(model)), ("--json" if json_out else "--headless", None),
                                             ("--max-new-tokens", str(max_new))]
    maybe = lambda chance: rng.random() < chance  # noqa: E731
    if maybe(0.4):
        options.append((rng.choice(["--prompt", "-p"]), rng.choice(["the quick brown fox", "der Hund", " ", "\n",
                                                                   "Tür 東京 👍", "\x1b[31m red", "--json"])))
    if maybe(0.3):
        options.append(("--min-new-tokens", str(rng.randint(0, max_new))))
    if maybe(0.5):
        options.append(("--do-sample", None))
        for flag, draw in (("--temperature", lambda: f"{rng.uniform(0.1, 3):.3g}"), ("--top-k", lambda: str(rng.randint(0, 50))),
                           ("--top-p", lambda: f"{rng.uniform(0.05, 1):.3g}"), ("--min-p", lambda: f"{rng.uniform(0, 0.2):.3g}"),
                           ("--typical-p", lambda: f"{rng.uniform(0.2, 1):.3g}"), ("--seed", lambda: str(rng.randint(0, 2**32)))):
            if maybe(0.35):
                options.append((flag, draw()))
    if maybe(0.2):
        options.append(("--repetition-penalty", f"{rng.uniform(0.5, 2):.3g}"))
    if maybe(0.2):
        options.append(("--no-repeat-ngram-size", str(rng.randint(0, 3))))
    if maybe(0.2):
        options.append(("--bad-word", rng.choice(["the", "fox", "dog"])))
    if maybe(0.2) and family == "llama":
        options.append(("--stop", rng.choice(["the", "o", "fox"])))
    top = rng.randint(2, 20)
    if maybe(0.3):
        options.append(("--top", str(top)))
    if maybe(0.2):
        options.append(("--prefill-rows", str(rng.randint(1, 100))))
    if maybe(0.2):
        options.append(("--device", rng.choice(["cpu", "auto"])))
    if maybe(0.2):
        options.append(("--dtype", rng.choice(["float32", "auto"])))
    if json_out and maybe(0.2):
        options.append(("--attention", None))
    if json_out and maybe(0.2):
        options.append(("--layers", None))
    if maybe(0.2):
        options.append(("--record", f"{box.root}/valid-{rng.randint(0, 3)}.lmscope"))
        if maybe(0.5):
            options.append(("--record-dtype", rng.choice(["float32", "float16"])))
    if maybe(0.3):
        options.append(("--break", random_condition(rng)))
    first = options[0]
    rest = options[1:]
    rng.shuffle(rest)
    argv = [family]
    for flag, value in [first, *rest]:
        if value is None:
            argv.append(flag)
        elif flag.startswith("--") and maybe(0.3):
            argv.append(f"{flag}={value}")
        else:
            argv += [flag, value]
    return Case(argv, must_succeed=True)


# -- running and judging a case ----------------------------------------------------------------

def _no_tui(tui) -> None:
    raise UserError("the TUI needs a terminal (the fuzzer never opens it)")


@pytest.fixture
def sandbox(tmp_path, tiny_llama_dir, tiny_t5_dir, monkeypatch) -> Sandbox:
    monkeypatch.chdir(tmp_path)  # a relative --record or --svg lands here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a --model that is no folder is a hub id: no 25 s of retries
    monkeypatch.setenv("LMSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "_run_app", _no_tui)
    return make_sandbox(tmp_path / "box", tiny_llama_dir, tiny_t5_dir)


def check(case: Case, capsys, box: Sandbox, label: str) -> int:
    """Run one case and assert what every case must hold; returns its exit code."""
    before = box.snapshot()
    code = cli.main(list(case.argv))
    out, err = capsys.readouterr()
    where = f"{label}\nargv = {case.argv!r}\nexit code {code}\nstderr: {err!r}\nstdout: {out[:500]!r}"
    lines = err.splitlines()
    assert code in ((0,) if case.must_succeed else (0, 2)), where
    assert "Traceback" not in err and "LMSCOPE_DEBUG" not in err, where
    assert all(line.startswith(WARNING) for line in (lines if code == 0 else lines[:-1])), where
    if code == 2:
        assert lines and lines[-1].startswith(ERROR), where
        assert lines[-1].isprintable(), where  # escaped as repr escapes: nothing a terminal acts on
    if code == 0 and case.json_lines():
        for line in out.splitlines():
            json.loads(line)  # raises with the case printed by the caller
    assert box.snapshot() == before, f"a file that was not the command's to write changed\n{where}"
    return code


def run_cases(seed: int, count: int, capsys, box: Sandbox, make=random_case) -> dict[int, int]:
    """``count`` cases from ``seed``; the exit codes counted."""
    rng = random.Random(seed)
    codes: dict[int, int] = {}
    for number in range(count):
        case = make(rng, box)
        try:
            code = check(case, capsys, box, f"seed {seed}, case {number}")
        except json.JSONDecodeError as error:
            raise AssertionError(f"seed {seed}, case {number}: a --json line is not JSON ({error})\n"
                                 f"argv = {case.argv!r}") from None
        codes[code] = codes.get(code, 0) + 1
    return codes


def _seeds(default: list[int]) -> list[int]:
    given = os.environ.get("LMSCOPE_FUZZ_SEED")
    return [int(seed) for seed in given.split(",")] if given else default


def _cases(default: int) -> int:
    return int(os.environ.get("LMSCOPE_FUZZ_CASES", default))


def test_random_command_lines(sandbox, capsys):
    codes = run_cases(20240601, 100, capsys, sandbox)
    assert codes.get(0) and codes.get(2), codes  # the mix holds both: the pools are not all bad or all good


def test_valid_combinations_succeed(sandbox, capsys):
    assert run_cases(7, 25, capsys, sandbox, make=valid_case) == {0: 25}


@pytest.mark.slow
@pytest.mark.parametrize("seed", _seeds([1, 2, 3]))
def test_seeded_random_command_lines(seed, sandbox, capsys):
    run_cases(seed, _cases(1000), capsys, sandbox)
    run_cases(seed, _cases(1000) // 4, capsys, sandbox, make=valid_case)


# -- breakpoints: refused before the model loads, or evaluated at every step -------------------

BREAK_RUN = ["--prompt", "the quick brown fox", "--max-new-tokens", "8", "--do-sample", "--temperature", "1.6",
             "--seed", "3", "--top", "5"]


@pytest.fixture(scope="module")
def recorded_steps(tiny_llama_dir, tmp_path_factory):
    """The run every breakpoint case repeats, recorded: its steps and the text up to each."""
    from lmscope.engine.trace_reader import Trace

    path = tmp_path_factory.mktemp("break-run") / "run.lmscope"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TQDM_DISABLE", "1")
        assert cli.main(["llama", "--model", str(tiny_llama_dir), "--json", *BREAK_RUN, "--record", str(path)]) == 0
    trace, text, steps = Trace(path), "", []
    for index in range(len(trace)):
        record = trace.step(index)
        text += record.token
        steps.append(step_values(record, text))
    return steps


@functools.cache
def fake_steps() -> tuple[dict, ...]:
    """Each step's values in fake sessions of both families (end of sequence, empty text ...)."""
    values = []
    for family in ("llama", "t5"):
        text = ""
        for record in make_session(family, steps=6).steps:
            text += record.token
            values.append(step_values(record, text))
    return tuple(values)


def check_break(expr: str, capsys, llama: Path, steps: list[dict], label: str) -> bool:
    """One ``--break``: refused with one line and exit 2 before the model loads, or accepted and
    then run to its first hit (the step where it first holds in ``steps``) with exit 0."""
    where = f"{label}\n--break {expr[:300]!r}{' ...' if len(expr) > 300 else ''}"
    loaded = []
    with pytest.MonkeyPatch.context() as patch:
        from lmscope.engine import session

        open_session = session.open_session
        patch.setattr("lmscope.headless.open_session", lambda options: loaded.append(1) or open_session(options))
        code = cli.main(["llama", "--model", str(llama), "--json", *BREAK_RUN, "--break", expr])
    out, err = capsys.readouterr()
    where += f"\nexit code {code}\nstderr: {err[:500]!r}"
    assert code in (0, 2), where
    assert "Traceback" not in err and "LMSCOPE_DEBUG" not in err, where
    if code == 2:
        assert not loaded, f"refused only after the model loaded\n{where}"
        assert err.count("\n") == 1 and err.startswith(ERROR) and err.strip().isprintable(), where
        return False
    assert err == "", where
    breakpoint = parse(expr, top=5)
    hits = [breakpoint.holds(values) for values in steps]  # never raises, at any step
    assert all(isinstance(breakpoint.holds(values), bool) for values in fake_steps()), where
    lines = [json.loads(line) for line in out.splitlines()]
    expected = hits.index(True) + 1 if any(hits) else len(steps)
    assert len(lines) == expected, where
    assert ("breakpoint" in lines[-1]) == any(hits), where
    return True


def run_breaks(seed: int, count: int, capsys, llama: Path, steps: list[dict]) -> int:
    """``count`` random conditions from ``seed``; returns how many were accepted."""
    rng = random.Random(seed)
    return sum(check_break(random_break(rng), capsys, llama, steps, f"seed {seed}, case {number}")
               for number in range(count))


def test_random_breakpoints(recorded_steps, tiny_llama_dir, capsys):
    accepted = run_breaks(99, 50, capsys, tiny_llama_dir, recorded_steps)
    assert 0 < accepted < 50  # some parse, some do not


def test_well_typed_conditions_are_all_accepted(recorded_steps, tiny_llama_dir, capsys):
    rng = random.Random(5)
    for number in range(20):
        expr = random_condition(rng)
        assert check_break(expr, capsys, tiny_llama_dir, recorded_steps, f"seed 5, case {number}"), expr


@pytest.mark.slow
@pytest.mark.parametrize("seed", _seeds([11, 12, 13]))
def test_seeded_random_breakpoints(seed, recorded_steps, tiny_llama_dir, capsys):
    run_breaks(seed, _cases(1000), capsys, tiny_llama_dir, recorded_steps)
