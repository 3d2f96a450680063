"""The `vaekit` command: the top-level parser and `main`; every command calls the Python API.
Each command group's module adds its own sub-parsers and holds its commands: `vaekit.cli.train`,
`vaekit.cli.commands` (evaluate, sample, reconstruct, encode, plot), and a module each for
cluster, score and serve.

A user mistake is one line on stderr and a non-zero exit, never a traceback, and never an
overwritten file.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from vaekit.cli import commands, train
from vaekit.cli.commands import cmd_encode, cmd_evaluate, cmd_plot, cmd_reconstruct, cmd_sample
from vaekit.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, Parser, UserError
from vaekit.cli.train import cmd_train


def build_parser() -> Parser:
    """The `vaekit` parser: each command group's module adds its own sub-parsers."""
    parser = Parser(
        prog="vaekit",
        description="Train variational autoencoders and use them: generate, encode, evaluate.",
        epilog="Run 'vaekit COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    train.add_parser(sub)
    commands.add_parsers(sub)
    for module in command_modules():
        module.add_parser(sub)
    return parser


# Command groups that live in modules of their own: each has add_parser(sub) and run(args).
COMMAND_MODULES = ("cluster", "classify", "predict", "score", "serve", "tables")


def command_modules() -> list[Any]:
    import importlib

    found = []
    for name in COMMAND_MODULES:
        try:
            found.append(importlib.import_module(f"vaekit.cli.{name}"))
        except ModuleNotFoundError as e:  # not written yet
            if e.name != f"vaekit.cli.{name}":
                raise
    return found


def _version() -> str:
    from vaekit import __version__

    return f"vaekit {__version__}"


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "encode": cmd_encode,
    "plot": cmd_plot,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = dict(COMMANDS)
    for module in command_modules():
        commands[module.NAME] = module.run
    from vaekit.core.config import ConfigError
    from vaekit.core.io import CheckpointError, Terminated, terminate_as_interrupt
    from vaekit.data import DataError
    from vaekit.train.distributed import label, launched
    from vaekit.train.loop import TrainingError, TrainingInterrupted

    name = f"{args.command}{label()}"  # under torchrun: which rank says it
    try:
        # SIGTERM: the same clean exit as Ctrl-C; warnings as one line each, like errors
        with terminate_as_interrupt(), warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(name)
            return commands[args.command](args)
    except TrainingInterrupted as e:
        print(f"vaekit {name}: {e}", file=sys.stderr)
        return 128 + e.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except Terminated:
        print(f"vaekit {name}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + Terminated.signum
    except KeyboardInterrupt:
        print(f"vaekit {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (
        UserError,
        ConfigError,
        DataError,
        CheckpointError,
        TrainingError,
        ValueError,
        FileExistsError,
        FileNotFoundError,
        PermissionError,
    ) as e:
        print(f"vaekit {name}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except RuntimeError as e:
        if not launched():
            raise
        # another rank failed or was stopped, and this one's collective broke off
        print(f"vaekit {name}: stopped: {_one_line(e)[:300]}", file=sys.stderr)
        return EXIT_ERROR


def _one_line_warnings(name: str) -> Callable[..., None]:
    """warnings.showwarning for the command line: 'vaekit CMD: warning: ...', one line."""

    def show(message: Warning | str, *args: object, **kwargs: object) -> None:
        print(f"vaekit {name}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    return show


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
