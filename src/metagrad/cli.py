"""The ``metagrad`` command line: ``metagrad <subcommand> [options]``.

Subcommands are registered, not hard-wired: a module adds one with::

    from metagrad.cli import command

    @command("bench", help="time the estimators")
    def _bench(parser):                      # configure the sub-parser ...
        parser.add_argument("--method", default="fg2u")
        def run(args):                       # ... and return the function that runs it
            ...
            return 0                         # exit status (None means 0)
        return run

(or, equivalently, ``register_command(name, configure, help=...)``). :func:`main` builds the
parser from every registered subcommand; modules listed in :data:`COMMAND_MODULES` are imported
first so that their registrations are seen. Errors metagrad raises on purpose
(:class:`~metagrad.errors.MetagradError`) and operating-system errors (a missing or unwritable
file, named in the message) are printed as one clean message with exit status 1 instead of a
traceback; Ctrl-C (and SIGTERM during ``fetch``) exits with status 130.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

__all__ = ["main", "command", "register_command", "build_parser", "COMMAND_MODULES"]

Runner = Callable[[argparse.Namespace], "int | None"]
Configure = Callable[[argparse.ArgumentParser], Runner]

#: Modules imported by :func:`main` before building the parser (they register subcommands).
COMMAND_MODULES: list[str] = []


@dataclass(frozen=True)
class _Command:
    name: str
    configure: Configure
    help: str


_COMMANDS: dict[str, _Command] = {}


def register_command(name: str, configure: Configure, *, help: str = "") -> None:
    """Register subcommand ``name``. ``configure(parser)`` adds its arguments to the sub-parser
    and returns ``run(args) -> exit status``. Registering a name twice replaces the first."""
    _COMMANDS[name] = _Command(name, configure, help)


def command(name: str, *, help: str = "") -> Callable[[Configure], Configure]:
    """Decorator form of :func:`register_command`."""
    def decorate(configure: Configure) -> Configure:
        register_command(name, configure, help=help)
        return configure
    return decorate


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per registered subcommand."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="metagrad", description="metagrad: hypergradient estimators for bilevel optimisation.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"metagrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in sorted(_COMMANDS.values(), key=lambda c: c.name):
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        p.set_defaults(_run=cmd.configure(p))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``metagrad`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    from .errors import MetagradError
    try:
        status = args._run(args)
    except (MetagradError, OSError) as exc:  # OSError messages name the file
        print(f"metagrad {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"metagrad {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


# --------------------------------------------------------------------------- built-in commands

@command("fetch", help="download data sets (verified by checksum) into the data root")
def _fetch(parser: argparse.ArgumentParser) -> Runner:
    from .data.registry import DATASETS

    parser.add_argument("datasets", nargs="+", choices=DATASETS, metavar="DATASET",
                        help=f"one or more of: {', '.join(DATASETS)}")
    parser.add_argument("--root", default=None,
                        help="data root (default: $METAGRAD_DATA, else ~/.cache/metagrad/data)")
    parser.add_argument("--mirror", default=None, metavar="URL",
                        help="download from URL/<folder>/<file> instead of the canonical "
                             "addresses (http(s):// or file://)")
    parser.add_argument("--force", action="store_true",
                        help="download again even when a valid file is present")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds before a stalled connection is abandoned (default 60)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds for the whole fetch, however slowly a server sends "
                             "(default 1800)")

    def run(args: argparse.Namespace) -> int:
        from .data.fetch import fetch
        from .data.paths import data_root

        paths = fetch(args.datasets, args.root, mirror=args.mirror, force=args.force,
                      progress=not args.quiet, timeout=args.timeout, quiet=args.quiet,
                      deadline=args.deadline)
        if not args.quiet:
            print(f"{len(paths)} file(s) ready under {data_root(args.root)}")
        return 0

    return run


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
