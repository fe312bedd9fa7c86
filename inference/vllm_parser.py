"""vLLM's own argument parsing, replayed without vLLM: which argument each extra argument really sets.

vLLM's server rewrites its command line before argparse sees it (FlexibleArgumentParser): underscores in a
flag become dashes, `--a.b x` is folded into a JSON value of `--a`, `-O3` means `--optimization-level 3`.
argparse then takes aliases (`-tp`), `=` forms, short options with the value attached (`-qawq`) and unique
abbreviations (`--trust-remote` is `--trust-remote-code`). So the spelling of a flag says little; what counts
is the argument (argparse's dest) it ends up setting. This module replays the rewrite, then lets the standard
library's argparse parse over a skeleton of vLLM's parser (the same option strings and arities) whose actions
only record what they were given.

The skeleton comes from vllm_parser.json, generated from the engine runtime's vLLM
(`manage.py vllm_parser --write`): glmadmin's processes never import vLLM (it lives in its own virtualenv,
possibly not even on the web host), and a form must validate in milliseconds, not in the seconds importing
vLLM takes. tests/inference/engines/test_vllm_parser.py regenerates the table from the installed vLLM and
compares it, and compares this parse with vLLM's own on tricky command lines, so neither can drift.
"""

import argparse
import functools
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

TABLE = Path(__file__).with_name("vllm_parser.json")


class ArgumentsError(ValueError):
    """vLLM would refuse these arguments (its message, or ours where it would crash)."""


@dataclass(frozen=True)
class Use:
    """One argument as the parser took it: its dest, the option string it matched, the values it consumed."""

    dest: str
    flag: str
    values: tuple[str, ...]


@functools.cache
def table() -> dict:
    return json.loads(TABLE.read_text())


def version() -> str:
    return table()["vllm"]


def canonical_flag(dest: str) -> str:
    """The long option of an argument (what the help and the error messages call it)."""
    for argument in table()["arguments"]:
        if argument["dest"] == dest:
            return next((o for o in argument["options"] if o.startswith("--")), dest)
    return dest


def parse(args: list[str]) -> list[Use]:
    """Each argument use in args, in the order vLLM's server takes them; ArgumentsError if it would refuse them."""
    namespace = argparse.Namespace(uses=[])
    _, unknown = _skeleton().parse_known_args(_rewrite(args), namespace)
    if unknown:
        raise ArgumentsError(f"{unknown[0]} is not an argument of vLLM {version()}'s server")
    return namespace.uses


class _Skeleton(argparse.ArgumentParser):
    def error(self, message):
        raise ArgumentsError(message)


class _Record(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        if values is None and not self.option_strings:
            return  # the optional positional (the model), not given
        given = values if isinstance(values, list) else [] if values is None else [values]
        namespace.uses.append(Use(self.dest, option_string or self.dest, tuple(given)))


@functools.cache
def _skeleton() -> _Skeleton:
    parser = _Skeleton(prog="vllm", add_help=False)
    for argument in table()["arguments"]:
        if argument["options"]:
            parser.add_argument(*argument["options"], dest=argument["dest"], nargs=argument["nargs"],
                                action=_Record, default=argparse.SUPPRESS)
        else:
            parser.add_argument(argument["dest"], nargs=argument["nargs"], action=_Record, default=None)
    return parser


# FlexibleArgumentParser.parse_args: "everything between the first -- and the first ." has underscores as dashes.
_FLAG_NAME = re.compile(r"(?<=--)[^.]*")


def _rewrite(args: list[str]) -> list[str]:
    """What FlexibleArgumentParser.parse_args hands to argparse (vLLM 0.32: utils/argparse_utils.py)."""
    return _fold_dotted(_normalise(args))


def _normalise(args: list[str]) -> list[str]:
    out = []
    for i, arg in enumerate(args):
        if arg.startswith("--help="):
            out.append("--help")
        elif arg.startswith("--"):
            key, eq, value = arg.partition("=")
            out.append(_FLAG_NAME.sub(lambda m: m.group(0).replace("_", "-"), key, count=1) + eq + value)
        elif arg.startswith("-O") and arg != "-O":
            out += ["--optimization-level", arg[3:] if arg[2] == "=" else arg[2:]]
        elif arg == "-O" and i + 1 < len(args) and args[i + 1] in {"0", "1", "2", "3"}:
            out.append("--optimization-level")
        else:
            out.append(arg)
    return out


def _fold_dotted(args: list[str]) -> list[str]:
    """`--a.b x` and `--a.b=x` become one `--a JSON` at the end, as vLLM does (it takes the next item as the
    value whatever it looks like)."""
    folded: dict[str, dict] = {}
    skip: set[int] = set()
    for i, arg in enumerate(args):
        if i in skip or not (arg.startswith("-") and "." in arg):
            continue
        if "=" in arg:
            arg, value = arg.split("=", 1)
            if "." not in arg:
                continue  # the dot was in the value
        elif i + 1 < len(args):
            value = args[i + 1]
            skip.add(i + 1)
        else:
            raise ArgumentsError(f"{arg} needs a value")  # vLLM itself would crash with an IndexError
        key, _, path = arg.partition(".")
        folded.setdefault(key, {})[path] = value
        skip.add(i)
    rest = [arg for i, arg in enumerate(args) if i not in skip]
    for key, values in folded.items():
        rest += [key, json.dumps(values, sort_keys=True)]
    return rest


# --- the table, from the engine runtime -------------------------------------------------------------------
SCRIPT = Path(__file__).resolve().parent / "runtime" / "dump_vllm_parser.py"


def from_runtime(python: str, *argvs: list[str]):
    """Ask the engine runtime's vLLM: its parser table, or (given argvs) the dests it sets for each argv."""
    command = [python, str(SCRIPT), *(["parse", *map(json.dumps, argvs)] if argvs else ["table"])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


def write(new_table: dict) -> None:
    """Store the table one argument a line, so that a new vLLM shows as a readable diff."""
    lines = ",\n".join(json.dumps(argument) for argument in new_table["arguments"])
    TABLE.write_text(f'{{"vllm": {json.dumps(new_table["vllm"])}, "python": {json.dumps(new_table["python"])}, '
                     f'"arguments": [\n{lines}\n]}}\n')
    table.cache_clear()
    _skeleton.cache_clear()
