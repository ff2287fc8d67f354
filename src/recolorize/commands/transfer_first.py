"""Decoding a transfer's first photos while torch is imported (issue 11: ~0.2 s of a 12-MP transfer).

Before the model loads, what a bad file should stop at once is decoded: the reference every job shares (one
pair or a folder) and a single pair's source. Pillow's decoders release the GIL and importing torch
(~0.75 s here) is mostly Python holding it, so on two cores the two overlap: the decoding starts in a thread
before torch is imported and is joined where it used to run. What a user sees does not change: option,
device and weight-file errors still come first (the decoding's outcome is looked at only after those
checks), a decoding error is the same one line, and the decoding's log lines are held until it succeeded
(then logged) or failed (dropped), as ``held_logs`` does.

Only files whose decoders print nothing are decoded in the thread: libtiff writes its warnings to file
descriptor 2, which only the main thread redirects (``imaging.files``), so a TIFF is decoded on the main
thread when the result is asked for, as before.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from recolorize.commands.job_logs import ThreadLogs, held_logs
from recolorize.commands.transfer_plan import Plan

__all__ = ["FirstDecode"]

#: The first bytes of a TIFF file (little- and big-endian, classic and BigTIFF).
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _decodes_quietly(path: Path) -> bool:
    """Whether ``path`` can be decoded off the main thread: a readable file that is not a TIFF."""
    try:
        with open(path, "rb") as file:
            return file.read(4) not in _TIFF_MAGIC
    except OSError:
        return False  # decoded on the main thread, where the error is raised as before


class FirstDecode:
    """The first photos of a ``transfer`` run, decoded in the background from construction on.

    ``result()`` returns ``(sources, reference)``: the single pair's decoded source by path (empty for a
    batch) and the decoded shared reference (one ``LoadedImage`` or a list for several; None for a pairs
    CSV or when nothing is left to do); a decoding error is raised there. ``close()`` (always, in a
    ``finally``) waits for the thread and removes its log handler.
    """

    def __init__(self, args: argparse.Namespace, plan: Plan, max_pixels: int) -> None:
        first = next((job for job in plan.jobs if args.overwrite or not job.output.exists()), None)
        self.source = first.source if first is not None and not plan.batch else None
        self.output = first.output if first is not None else None
        self.reference = first.reference if first is not None and args.pairs is None else None
        self.max_pixels = max_pixels
        self.records: list[Any] = []
        self.outcome: Any = None
        self.logs: ThreadLogs | None = None
        self.thread: threading.Thread | None = None
        paths = [p for p in (self.source, self.reference) if p is not None]
        paths = [q for p in paths for q in (p if isinstance(p, tuple) else (p,))]
        if paths and all(_decodes_quietly(path) for path in paths):
            self.logs = ThreadLogs().__enter__()
            self.thread = threading.Thread(
                target=self._decode_in_thread, name="recolorize-decode", daemon=True
            )
            self.thread.start()

    def _decode(self) -> tuple[dict[Path, Any], Any]:
        from recolorize.commands.transfer_run import load_references
        from recolorize.imaging import check_output_fits, load_image

        sources = {}
        if self.source is not None:
            # the output format's size limits, from the header: before anything is decoded
            check_output_fits(self.output, self.source, self.max_pixels)
            sources[self.source] = load_image(self.source, max_pixels=self.max_pixels)
        reference = None
        if self.reference is not None:
            reference = load_references(self.reference, self.max_pixels)
        return sources, reference

    def _decode_in_thread(self) -> None:
        assert self.logs is not None
        try:
            self.outcome = self.logs.run(self.records, self._decode)
        except BaseException as error:  # noqa: BLE001 - raised again on the main thread by result()
            self.outcome = error

    def result(self) -> tuple[dict[Path, Any], Any]:
        """The decoded photos (see the class docstring); a decoding error is raised here."""
        if self.thread is None:
            with held_logs():
                return self._decode()
        self.close()
        if isinstance(self.outcome, BaseException):
            raise self.outcome  # its held log lines are dropped: the error line stands alone
        ThreadLogs.replay(self.records)
        self.records = []
        return self.outcome

    def close(self) -> None:
        """Wait for the decoding thread (if any) and stop holding log lines for it."""
        if self.thread is not None:
            self.thread.join()
        if self.logs is not None:
            self.logs.__exit__(None, None, None)
            self.logs = None
