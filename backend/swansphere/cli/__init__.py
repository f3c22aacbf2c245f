"""The ``swansphere`` command line. Each subcommand lives in its own module and registers itself.

Bad input surfaces as one line, ``swansphere: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from swansphere import __version__
from swansphere.errors import InputError

from . import audio, bench, data, demo, evaluate, generate, serve, train

COMMAND_MODULES = (audio, data, train, evaluate, generate, bench, demo, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swansphere",
        description="SwanSphere: generative spatial audio middleware (AmbiX FOA, head tracking).",
    )
    parser.add_argument("--version", action="version", version=f"swansphere {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.run(args) or 0)
    except InputError as exc:
        print(f"swansphere: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
