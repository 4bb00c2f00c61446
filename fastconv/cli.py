"""The `fastconv` command: one sub-command per module in fastconv.commands."""

from __future__ import annotations

import argparse
import importlib
import sys

#: each name is a module fastconv.commands.<name> with register(subparsers) -> parser and run(args) -> int
COMMANDS = ("info", "train", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastconv", description="2-D convolution and pooling on numpy arrays: "
                                     "benchmarks, a small trainer, and what this machine supports.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"fastconv.commands.{name}")
        module.register(subparsers).set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
