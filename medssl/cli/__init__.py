"""The ``medssl`` command. Each subcommand lives in a small module of this package that
exposes ``register(subparsers)``; the work itself happens in the layers below.

Exit statuses: 0 ok, 1 internal error, 2 usage, 3 bad input, 4 config, 5 checkpoint,
6 batch finished with some inputs failed, 7 batch finished with every input failed."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from medssl import __version__
from medssl.errors import EXIT_INTERNAL, EXIT_USAGE, MedsslError

# Modules that each add one or more subcommands, in the order `--help` lists them.
COMMAND_MODULES = (
    "medssl.cli.io_cmds",
    "medssl.cli.data_cmds",
    "medssl.cli.pretrain_cmds",
    "medssl.cli.finetune_cmds",
    "medssl.cli.predict_cmds",
    "medssl.cli.viewer_cmds",
    "medssl.cli.demo_cmds",
    "medssl.cli.configs_cmds",
)

log = logging.getLogger("medssl")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default exits 2 too; keep it one line + hint
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="medssl",
        description="Self-supervised pretraining, fine-tuning, batch analysis and viewing of 3D CT/MR scans.",
        epilog="Exit statuses: 0 ok, 1 internal error, 2 usage, 3 bad input, 4 config, "
        "5 checkpoint, 6 some inputs failed, 7 all inputs failed.",
    )
    parser.add_argument("--version", action="version", version=f"medssl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    from medssl.cli.help_examples import add_examples

    add_examples(parser)
    return parser


def _setup_logging(quiet: bool, debug: bool = False) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if not debug:
        # Library warnings (numpy RuntimeWarnings, deprecations) quote source lines and come
        # in bursts; an error is one line. --debug shows them.
        logging.captureWarnings(True)
        logging.getLogger("py.warnings").setLevel(logging.ERROR)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes a positional list only once: `--config C data.root=D --pretrained P a=b`
    # leaves `a=b` over. Overrides may stand anywhere after the subcommand.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    _setup_logging(args.quiet, args.debug)
    try:
        return int(args.func(args) or 0)
    except MedsslError as err:
        if args.debug:
            raise
        print(f"medssl: error [{err.code}]: {_one_line(str(err))}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print("medssl: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - last line of defence: one line, no traceback
        if args.debug:
            raise
        # Only the class name: a third-party message may quote header values (patient data).
        print(
            f"medssl: internal error: {err.__class__.__name__} (run with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
