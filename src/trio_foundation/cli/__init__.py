"""The ``foundation`` command line.

Each command group lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``handler`` (a callable taking the
parsed namespace and returning the exit code). Expected failures (bad input, a
missing tool) are printed as one line on stderr with exit code 2; never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

from .._errors import FoundationError

__all__ = ["main"]

# Command-group modules, in the order they appear in --help.
_COMMAND_MODULES = ("specs", "lincheck", "chaos", "lock", "kv", "raft")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _version() -> str:
    try:
        return importlib.metadata.version("trio-foundation")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        from .. import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every command group registered."""
    parser = _Parser(
        prog="foundation",
        description="trio-foundation: model-check specs, check histories, run chaos scenarios.",
    )
    parser.add_argument(
        "--version", action="version", version=f"foundation (trio-foundation) {_version()}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``foundation`` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            code: int = args.handler(args)
        except BaseExceptionGroup as group:
            # A nursery wraps a single expected failure in groups: report it as the
            # bare error. Anything else (several errors, a bug) propagates whole.
            leaf: BaseException = group
            while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
                leaf = leaf.exceptions[0]
            if isinstance(leaf, (FoundationError, ValueError, OSError)):
                raise leaf from None
            raise
    except (FoundationError, ValueError, OSError) as exc:
        print(f"foundation: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("foundation: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
