"""The `paramgen` command: one subcommand per module in `paramgen.commands`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Modules are imported only when their command runs, so `paramgen --help` stays fast.

No Python traceback reaches a user for bad input or an environment fault: `main` turns every
exception into one line on stderr that names the file, key, argument or value at fault
(`paramgen CMD: error: ...`, exit status 2; an unexpected error is labelled as one, exit 1).
`--debug` prints the traceback as well.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
import warnings

from paramgen.commands.words import to_cli_words

# Idle OpenMP threads otherwise spin for their next job; on a small or shared machine the spinning
# steals the cores that do the work (measured here: small torch ops 10-100x slower). Must be set
# before torch is imported, which the commands do lazily.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMANDS = {
    "collect": "paramgen.commands.collect",
    "train": "paramgen.commands.train",
    "sample": "paramgen.commands.sample",
    "eval": "paramgen.commands.eval",
    "generate": "paramgen.commands.generate",
    "demo": "paramgen.commands.demo",
    "align": "paramgen.commands.align",
    "import": "paramgen.commands.import_",
    "generators": "paramgen.commands.generators",
}

SUMMARIES = {
    "collect": "train a model and save checkpoints along the way (single task, runs, task grids)",
    "train": "fit a parameter generator (RPG, p-diff or IGPG) on checkpoint collections",
    "sample": "sample new models from a trained generator",
    "eval": "evaluate sampled models against the training checkpoints and write a report",
    "generate": "generate a model for a task given as bits or a plain-English prompt",
    "demo": "the whole pipeline on digits in a few minutes: collect, train, sample, evaluate",
    "align": ("permute a collection's checkpoints into one basin (independent runs, "
              "cold-started tasks)"),
    "import": "turn a plain folder of .pt/.safetensors state dicts into a checkpoint collection",
    "generators": "list the pretrained generators that ship with paramgen (usable as --gen NAME)",
}

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


def _load(name: str):
    return importlib.import_module(COMMANDS[name])


class Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a mistyped option, command or choice."""

    def error(self, message: str):  # type: ignore[override]
        hint = self._suggestion(message)
        super().error(message + (f" (did you mean {hint}?)" if hint else ""))

    def _suggestion(self, message: str) -> str | None:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2))
            close = difflib.get_close_matches(choice.group(1), options, n=1, cutoff=0.5)
            return close[0] if close else None
        unknown = re.search(r"unrecognized arguments: (.*)$", message)
        if unknown:
            flags = [o for a in self._actions for o in a.option_strings]
            for token in unknown.group(1).split():
                if token.startswith("-"):
                    close = difflib.get_close_matches(token.split("=")[0], flags, n=1,
                                                      cutoff=0.6)
                    if close:
                        return close[0]
        return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog="paramgen",
        description="Learn the distribution of trained network parameters and sample new networks.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the Python traceback too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers: dict[str, argparse.ArgumentParser] = {}
    parser.set_defaults(_subparsers=subparsers)
    for name in COMMANDS:
        p = sub.add_parser(name, help=SUMMARIES[name], description=SUMMARIES[name])
        subparsers[name] = p
        p.add_argument("--threads", type=int, default=1,
                       help="CPU threads for torch (default: %(default)s; on a 2-core or busy "
                            "machine one thread was measured fastest for these small models, "
                            "raise it on a dedicated many-core machine)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="on an error, print the Python traceback too")
        if name == only:
            _load(name).add_arguments(p)
    return parser


def describe_error(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit status) for an exception that ended a command."""
    from paramgen.io import describe_os_error

    name = type(exc).__name__
    text = " ".join(str(exc).split())  # one line, whatever the message held
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]  # str(KeyError) adds quotes around the message
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError,
                        PermissionError, FileExistsError)) and not isinstance(exc, ValueError):
        return (text if exc.filename is None else describe_os_error(exc)), EXIT_BAD_INPUT
    if isinstance(exc, OSError) and not isinstance(exc, ValueError):
        return describe_os_error(exc), EXIT_BAD_INPUT
    if isinstance(exc, (ValueError, KeyError, TypeError, IndexError)):
        # TypeError/IndexError reach here from user-supplied values (a keyword a model does not
        # take, a wrong index) as often as from bugs; the message still names the value.
        return text or name, EXIT_BAD_INPUT
    if isinstance(exc, ImportError) and "pip install" in text:
        # An optional extra that is not installed (paramgen.text.TextEncoderMissing and the
        # like): the environment's fault, and the message says how to install it.
        return text, EXIT_BAD_INPUT
    if isinstance(exc, MemoryError):
        return ("out of memory; try a smaller batch, fewer samples, or --mode sequential",
                EXIT_BAD_INPUT)
    if isinstance(exc, (RuntimeError, AssertionError)) and (
            "CUDA" in text or "cuda" in text or "device" in text):
        return f"device problem: {text}", EXIT_BAD_INPUT
    if type(exc).__module__.startswith("safetensors") or "Safetensor" in name:
        return f"unreadable safetensors file: {text}", EXIT_BAD_INPUT
    return (f"unexpected {name}: {text} (rerun with --debug for the traceback and please report "
            "it)"), EXIT_INTERNAL


def _one_line_warning(command: str):
    """A `warnings.showwarning` that prints paramgen's own warnings (`ParamgenWarning`) as one
    line of the command (``paramgen sample: warning: ...``); other warnings print as usual."""
    default = warnings.showwarning

    from paramgen.notices import ParamgenWarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ParamgenWarning):
            print(f"paramgen {command}: warning: {to_cli_words(str(message))}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    # A command's option at fault gets that command's usage, not the top-level one.
    where = args._subparsers.get(args.command, parser) if args.command else parser
    if extra:
        where.error(f"unrecognized arguments: {' '.join(extra)}")
    del args._subparsers
    if args.command is None:
        parser.print_help()
        return 0
    if args.threads < 1:
        where.error(f"--threads must be >= 1, got {args.threads}")
    try:
        import torch

        torch.set_num_threads(args.threads)
        with warnings.catch_warnings():
            if not args.debug:  # a warning is one line of the command's, like its errors
                warnings.showwarning = _one_line_warning(args.command)
            return int(_load(args.command).run(args) or 0)
    except KeyboardInterrupt as exc:
        # paramgen.interrupts.Interrupted: a loop saved its state on SIGINT or SIGTERM and says
        # where; its exit_code is the shell's convention (128 + the signal's number).
        if getattr(exc, "exit_code", None) is not None:
            print(f"paramgen {args.command}: {exc}", file=sys.stderr)
            return int(exc.exit_code)
        print(f"paramgen {args.command}: interrupted; run the same command again to resume.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into a reader that stopped early (`paramgen ... | head`): not an error.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:  # the one place errors become messages; see the module docstring
        message, status = describe_error(exc)
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"paramgen {args.command}: error: {to_cli_words(message)}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
