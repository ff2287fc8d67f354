"""The ``recolorize`` command: a thin layer over the Python API, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from recolorize.errors import OneLineParser, exit_code, refuse_non_finite_options

__all__ = ["main", "entry", "build_parser"]

# Each entry is a module under recolorize.commands exposing ``register(subparsers)``; the registered
# parser sets ``func(args) -> int``. Order is the order shown by ``recolorize --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "transfer",
    "lut",
    "lut_apply",
    "augment_grid",
    "make_bench",
    "eval",
    "dpst_report",
    "analyse",
    "build_cache",
    "train",
    "export",
    "app",
)


class BarSafeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines to stderr that a progress bar does not swallow: while a tqdm bar is drawn, each line goes
    through ``tqdm.write`` (the bar is cleared, the line printed, the bar drawn again below it), so a
    batch's "wrote" lines are not glued onto the end of the bar on a terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        bars = getattr(sys.modules.get("tqdm"), "tqdm", None)  # tqdm is imported only by batch commands
        if bars is None or not getattr(bars, "_instances", None):
            super().emit(record)
            return
        try:
            bars.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - as logging's own handlers: a broken stream is not our crash
            self.handleError(record)


def package_version() -> str:
    """The installed package's version (``importlib.metadata``); ``recolorize.__version__`` when the
    source tree runs without being installed."""
    from importlib import metadata

    try:
        return metadata.version("recolorize")
    except metadata.PackageNotFoundError:
        from recolorize import __version__

        return __version__


class VersionAction(argparse.Action):
    """``--version``: the version is read only when asked (``importlib.metadata`` costs ~20 ms a command)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"{parser.prog} {package_version()}")  # on stdout, as argparse's own version action
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand registered (or just ``only``, if it is one).

    Registering one subcommand imports only its module, so ``recolorize transfer`` does not pay for the
    training and evaluation imports (torch, scipy, matplotlib) of the others before it can start.
    """
    parser = OneLineParser(  # option errors in one line; its subparsers take its class
        prog="recolorize",
        description="Re-colour a photo after a reference photo (latent-guided exemplar re-colorization).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action=VersionAction, help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    names = [n for n in COMMAND_MODULES if n.replace("_", "-") == only] or COMMAND_MODULES
    for name in names:
        importlib.import_module(f"recolorize.commands.{name}").register(subparsers)
    for sub in subparsers.choices.values():
        plain_help(sub)
    return parser


def plain_help(parser: argparse.ArgumentParser) -> None:
    """Help a user reads in a terminal, from a wheel: descriptions taken from docstrings lose their RST
    markup (double backquotes) and their references to source files (``(data/cache.py)``)."""
    import re

    def plain(text: str | None) -> str | None:
        if not text:
            return text
        text = re.sub(r"\s*\((?:[\w./-]+/)?[\w-]+\.py\)", "", text)  # "(data/cache.py)"
        return text.replace("``", "'")

    parser.description = plain(parser.description)
    parser.epilog = plain(parser.epilog)
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = plain(action.help)


#: The commands that only re-colour photos (NumPy and ONNX Runtime, no torch): ``one_blas_thread``.
PHOTO_COMMANDS = frozenset({"transfer", "lut", "lut-apply", "app"})


def one_blas_thread(command: str | None) -> None:
    """For a photo command, NumPy's BLAS on one thread (``OPENBLAS_NUM_THREADS=1``) unless the user chose.

    Why: OpenBLAS's idle threads spin after each product, on the cores that ONNX Runtime's threads and the
    NumPy passes run on next. Measured on 2 cores: 20 1-MP photos 6.99 -> 6.48 s and 11.3 -> 7.8 s of CPU,
    a 12-MP photo 1.21 -> 0.97 s of CPU at the same wall time (docs/results.md). It also makes a
    ``--jobs 1`` run's BLAS what its helpers use (one thread each). Effective only before NumPy is imported,
    which a command's first import does; training and evaluation (torch) are left alone."""
    chosen = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
    if command in PHOTO_COMMANDS and not any(name in os.environ for name in chosen):
        os.environ["OPENBLAS_NUM_THREADS"] = "1"


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, dispatch (``errors.exit_code``: a UserError is one line on stderr and exit code 2,
    Ctrl-C exit code 130)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    one_blas_thread(command)
    parser = build_parser(only=command)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command they were given to, not by the root parser
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[BarSafeHandler()],
    )
    logging.getLogger("PIL").setLevel(logging.INFO)  # --verbose is about us, not every PNG chunk Pillow reads

    def command() -> int:
        refuse_non_finite_options(args)  # any float option of any command: nan, inf, 1e400
        return args.func(args)

    return exit_code(command)


def entry() -> None:
    """The ``recolorize`` console script and ``python -m recolorize``: ``main``, its code the exit status."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
