"""The transfer job as one library call: settings checked once, jobs planned, run, written atomically.

Why one module: ``recolorize transfer`` was seven command modules that passed argparse's Namespace five
levels down (and pickled it into helper processes), checked whether an output exists in five places,
``strength`` in five and resolved the weights path three times, and two import cycles held them together.
Here each option has one check (:class:`TransferSettings`), every path is checked once while the jobs are
planned (:func:`plan_transfer`), the model is checked once (:func:`check_model`) and :func:`run_transfer`
owns decode -> model -> full resolution -> save for each job. The commands (``transfer``, ``lut``,
``lut-apply``) are shells over it.

What a user sees is decided here: everything cheap is checked before anything slow (options, paths,
suffixes, output folders, photo headers, the weight file); then a single pair decodes its photos before the
model loads, so that a bad file stops the command at once. In a batch (a folder or a pairs CSV) a bad
pair, whatever went wrong with it, fails alone; its log lines are dropped with it (an error line stands
alone), and a pair that succeeded logs its lines in the batch's order.

``jobs`` above 1 runs a batch in a pool of worker processes, each with its own model, that receive only
plain values (the settings, the weights path, one :class:`Job` at a time). Why processes rather than threads
sharing one model: with torch behind the model, threads queued on Python's lock between its many small
operations (1.5x on two cores against 1.8x for processes, and no more with more cores). Not yet measured
again with ONNX Runtime, whose sessions release the lock for a whole network.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recolorize.config import resolution_problem
from recolorize.errors import UserError, one_line
from recolorize.image_formats import PHOTO_SUFFIXES
from recolorize.io_utils import is_hidden, name_problem, output_file_problem, remove_temporaries
from recolorize.threads import THREAD_VARIABLES, cores, in_background, limit_cores

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from recolorize.imaging import LoadedImage
    from recolorize.inference.pipeline import Recolorizer

__all__ = [
    "MAX_JOBS",
    "LUT_SUFFIX",
    "TransferSettings",
    "Job",
    "Plan",
    "TransferReport",
    "check_strength",
    "check_quality",
    "check_size",
    "check_output",
    "check_output_folder",
    "check_lut_output",
    "images_in",
    "reference_paths",
    "describe_reference",
    "plan_transfer",
    "check_model",
    "load_recolorizer",
    "out_of_memory_is_an_error",
    "held_logs",
    "run_transfer",
    "worker_count",
]

logger = logging.getLogger(__name__)

#: Most processes ``jobs`` may ask for (each holds a model).
MAX_JOBS = 16
#: The one suffix a LUT output may have.
LUT_SUFFIX = ".cube"
#: Photos picked up from a folder, by suffix.
IMAGE_SUFFIXES = frozenset(PHOTO_SUFFIXES)
#: Photos queued per worker process: one running and one waiting, so a worker that dies loses only those.
QUEUED_PER_WORKER = 2

Reference = Path | tuple[Path, ...]


# --------------------------------------------------------------------------------------- the settings


def check_strength(strength: float) -> None:
    """0 returns the source, 1 the full transfer; nothing else means anything."""
    if not 0.0 <= strength <= 1.0:
        raise UserError(f"--strength must be between 0 and 1, got {strength}")


def check_quality(quality: int) -> None:
    """JPEG quality, as Pillow takes it."""
    if not 1 <= quality <= 100:
        raise UserError(f"--quality must be between 1 and 100, got {quality}")


def check_size(size: int | None) -> None:
    """The working resolution: the model config's one range (``config.resolution_problem``)."""
    if size is not None and (problem := resolution_problem(size)) is not None:
        raise UserError(f"--size {problem}")


@dataclass(frozen=True)
class TransferSettings:
    """How to re-colour, checked once, here: every option a transfer takes besides its paths and model.

    strength: 0 (the source) to 1 (the full transfer). size: the working resolution (None: the model's).
    device: "cpu" or "cuda[:N]" (checked against the machine by :func:`check_model`). quality: JPEG quality.
    max_pixels: the decompression-bomb limit as given (an int, or the text of ``--max-pixels``; None:
    ``$RECOLORIZE_MAX_PIXELS``, else the default); after construction always the resolved int.
    overwrite: replace existing outputs (even the source). lut: also write the look as a ``.cube`` here
    (one pair only). jobs: photos re-coloured at once in a batch (worker processes, 1-``MAX_JOBS``).

    Frozen and made of plain values, so that it crosses into worker processes as it is.
    """

    strength: float = 1.0
    size: int | None = None
    device: str = "cpu"
    quality: int = 95
    max_pixels: int | str | None = None
    overwrite: bool = False
    lut: Path | None = None
    jobs: int = 1

    def __post_init__(self) -> None:
        from recolorize.imaging import resolve_max_pixels

        check_strength(self.strength)
        check_quality(self.quality)
        check_size(self.size)
        if not 1 <= self.jobs <= MAX_JOBS:
            raise UserError(f"--jobs must be between 1 and {MAX_JOBS}, got {self.jobs}")
        if self.lut is not None:
            object.__setattr__(self, "lut", Path(self.lut))
            if (problem := name_problem(self.lut)) is not None:
                raise UserError(problem)
        object.__setattr__(self, "max_pixels", resolve_max_pixels(self.max_pixels))

    @property
    def pixel_limit(self) -> int:
        """``max_pixels`` as the int it is once constructed."""
        assert isinstance(self.max_pixels, int)
        return self.max_pixels


# ------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Job:
    """One re-colouring: source photo, its reference photo(s), output path.

    reference: one path, or a tuple of several (each region of the source then takes its colour from its
    best match in any of them: ``Recolorizer.prepare`` with a list).
    """

    source: Path
    reference: Reference
    output: Path


@dataclass
class Plan:
    """The jobs to run; whether this is a batch (one pair is not: its error is the command's); the batch
    entries refused before any work (one line each); the reference every job shares (a folder's), which a
    batch decodes before its first job so that a bad one stops it."""

    jobs: list[Job]
    batch: bool
    rejected: list[str] = field(default_factory=list)
    shared_reference: Reference | None = None


def reference_paths(reference: Reference) -> tuple[Path, ...]:
    """The reference path(s) of a job as a tuple."""
    return reference if isinstance(reference, tuple) else (reference,)


def describe_reference(reference: Reference) -> str:
    """Paths joined with " + " for messages."""
    return " + ".join(str(path) for path in reference_paths(reference))


def images_in(folder: Path) -> list[Path]:
    """Photos by suffix; a FIFO or device named like a photo is kept, so that it is named and skipped.
    Hidden files are not photos: a dot-file, or a temporary file a killed writer left (``is_hidden``)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p.name) and not p.is_dir()
    )


def check_output_folder(folder: Path) -> None:
    """A batch writes into ``folder``: it must be a folder (or not exist yet, under a writable one)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"the output of a batch must be a folder, and {folder} is a file")
    if (problem := output_file_problem(folder / "x", create_folder=True)) is not None:
        raise UserError(problem.replace(f"cannot write {folder / 'x'}", f"cannot create folder {folder}"))


def check_output(job: Job, overwrite: bool, batch: bool = True) -> None:
    """``job.output`` can be written: not the source or an existing file (unless ``overwrite``), not a
    folder, a name the filesystem takes, in a writable folder (``io_utils.output_file_problem``). That
    folder may be made in a batch (under its ``-o`` folder); one output file's folder (``batch=False``,
    as the commands check a single output before any work) must exist, as with ``cp``."""
    if job.output.resolve() == job.source.resolve() and not overwrite:
        raise UserError(f"output {job.output} is the source itself; use --overwrite to replace it")
    if job.output.exists() and not overwrite:
        raise UserError(f"output {job.output} exists; use --overwrite to replace it")
    if job.output.is_dir():
        raise UserError(f"output {job.output} is a folder; give a file name")
    if (problem := output_file_problem(job.output, create_folder=batch)) is not None:
        raise UserError(problem)


def check_lut_output(path: Path, overwrite: bool) -> None:
    """A ``.cube`` output that can be written: checked before any work."""
    if (problem := name_problem(path)) is not None:
        raise UserError(problem)
    if path.suffix.lower() != LUT_SUFFIX:
        raise UserError(f"the LUT file {path} must end in {LUT_SUFFIX}")
    if path.is_dir():
        raise UserError(f"the LUT file {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"LUT file {path} exists; use --overwrite to replace it")
    if (problem := output_file_problem(path)) is not None:
        raise UserError(problem)


def plan_transfer(
    output: Path,
    settings: TransferSettings,
    source: Path | None = None,
    references: Sequence[Path] = (),
    pairs: Path | None = None,
) -> Plan:
    """The jobs of one pair, a folder (``source`` a folder) or a pairs CSV, every path checked now: regular
    files only (a FIFO would block the open forever), outputs that can be written, the photos' headers
    (a text file named .jpg is refused here, not after the model loaded), the LUT output. A bad CSV row is
    named in ``Plan.rejected`` and the others planned; anything else wrong is a ``UserError``."""
    from recolorize.imaging import check_regular_file

    if (problem := name_problem(output)) is not None:
        raise UserError(problem)
    reference = None if not references else references[0] if len(references) == 1 else tuple(references)
    if pairs is not None:
        if source is not None or reference is not None:
            raise UserError("give either SOURCE REFERENCE or --pairs, not both")
        check_output_folder(output)
        plan = _plan_pairs(pairs, output)
    else:
        if source is None or reference is None:
            raise UserError("give SOURCE and REFERENCE (or --pairs CSV)")
        for path in reference_paths(reference):
            check_regular_file(path)
        if source.is_dir():
            plan = _plan_folder(source, reference, output)
        else:
            plan = _plan_pair(source, reference, output, settings.overwrite)
        _check_headers(plan, reference, settings.pixel_limit)
    if settings.lut is not None:
        if plan.batch:
            raise UserError("--lut writes the look of one transfer: give one SOURCE and REFERENCE")
        check_lut_output(settings.lut, settings.overwrite)
    return plan


def _plan_pair(source: Path, reference: Reference, output: Path, overwrite: bool) -> Plan:
    """One pair: its output (a file, or a name inside an existing folder) checked now."""
    from recolorize.imaging import check_regular_file, output_format

    check_regular_file(source)
    if output.is_dir():
        output = output / source.name
    output_format(output)
    job = Job(source, reference, output)
    check_output(job, overwrite, batch=False)
    return Plan([job], batch=False)


def _plan_folder(folder: Path, reference: Reference, output: Path) -> Plan:
    """Every photo of ``folder`` after one reference, written under the same names into ``output``."""
    check_output_folder(output)
    sources = images_in(folder)
    if not sources:
        raise UserError(f"no images in folder {folder}")
    jobs = [Job(s, reference, output / s.name) for s in sources]
    return Plan(jobs, batch=True, shared_reference=reference)


def _check_headers(plan: Plan, reference: Reference, max_pixels: int) -> None:
    """The headers of the photos every job needs (the references; one pair's source): a file that is not
    a photo, or over the pixel limit, stops the command before anything is decoded."""
    from recolorize.imaging import photo_size

    for path in reference_paths(reference):
        photo_size(path, max_pixels)
    if not plan.batch:
        photo_size(plan.jobs[0].source, max_pixels)


def _inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` when it stays inside ``root`` (after ``..`` and symlinks), else None."""
    rel = Path(relative)
    if not relative.strip() or rel.is_absolute() or rel.drive or rel.root:
        return None
    target = root / rel
    try:
        resolved, base = target.resolve(), root.resolve()
    except (OSError, ValueError, RuntimeError):  # NUL byte, symlink loop
        return None
    if resolved == base or not resolved.is_relative_to(base):
        return None
    return target


def _read_pairs(path: Path) -> list[tuple[int, list[str]]]:
    """The rows (line number, cells) of a pairs CSV after its header, read as UTF-8 (a BOM is fine)."""
    from recolorize.imaging import check_regular_file

    check_regular_file(path, "pairs file")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = [cell.strip().lower() for cell in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise UserError(f"pairs file {path} is not UTF-8 text; save it as CSV UTF-8") from None
    except csv.Error as exc:
        raise UserError(f"pairs file {path} is not a readable CSV ({one_line(exc)})") from None
    except OSError as exc:
        raise UserError(f"cannot read pairs file {path}: {one_line(exc.strerror or exc)}") from None
    if not {"source", "reference"} <= set(header):
        raise UserError(f"{path} needs a header with columns source,reference[,output]")
    columns = {name: header.index(name) for name in ("source", "reference", "output") if name in header}
    return [(line, [row[i].strip() if i < len(row) else "" for i in columns.values()]) for line, row in rows]


def _pair_job(cells: list[str], base: Path, output_root: Path, where: str) -> Job:
    """The job of one CSV row (source, reference[, output] cells), every path checked."""
    from recolorize.imaging import check_regular_file, output_format

    source_cell, reference_cell = cells[0], cells[1]
    output_cell = cells[2] if len(cells) > 2 else ""
    if not source_cell or not reference_cell:
        raise UserError(f"{where}: no {'source' if not source_cell else 'reference'}; row skipped")
    names = [cell.strip() for cell in reference_cell.split(";") if cell.strip()]
    if not names:
        raise UserError(f"{where}: no reference; row skipped")
    paths = tuple(base / name for name in names)
    source, reference = base / source_cell, (paths if len(paths) > 1 else paths[0])
    output = _inside(output_root, output_cell or source.name)
    if output is None:
        raise UserError(
            f"{where}: output {output_cell or source.name!r} is not inside {output_root}; row skipped"
        )
    check_regular_file(source)
    for path in reference_paths(reference):
        check_regular_file(path)
    output_format(output)
    return Job(source, reference, output)


def _plan_pairs(pairs: Path, output: Path) -> Plan:
    """The jobs of a pairs CSV: a bad row is named (with its line) in ``rejected``, the others planned."""
    plan = Plan([], batch=True)
    for line, cells in _read_pairs(pairs):
        where = f"{pairs} line {line}"
        try:
            plan.jobs.append(_pair_job(cells, pairs.parent, output, where))
        except UserError as error:
            message = str(error)
            plan.rejected.append(message if message.startswith(where) else f"{where}: {message}; row skipped")
    if not plan.jobs and not plan.rejected:
        raise UserError(f"{pairs} has no pairs after its header")
    return plan


# ----------------------------------------------------------------------------------------- the model


def check_model(weights: Path | None, device: str) -> Path:
    """The exported model folder to load (``weights``: the folder, a file in it, or None for the shipped
    model), resolved once with its config and working resolution read, and ``device`` checked against this
    machine: before any photo is decoded, so that a bad folder or a missing GPU is one line at once."""
    from recolorize.inference.onnx_model import check_device, model_folder, read_config, read_resolution

    check_device(device)
    folder = model_folder(weights)
    read_resolution(folder, read_config(folder))
    return folder


def load_recolorizer(
    weights: Path | None, settings: TransferSettings, threads: int | None = None, wait: bool = True
) -> Recolorizer:
    """The ``Recolorizer`` of ``weights`` on ``settings.device``, at ``settings.size``, running its networks
    on ``threads`` threads (None: every core this process may use); ``wait=False``: its graphs may still
    be loading (``Recolorizer.from_pretrained``)."""
    from recolorize.inference.pipeline import Recolorizer

    recolorizer = Recolorizer.from_pretrained(weights, device=settings.device, threads=threads, wait=wait)
    if settings.size is not None:
        recolorizer.resolution = settings.size
    return recolorizer


@contextlib.contextmanager
def out_of_memory_is_an_error(size: int | None, job: Job | None = None) -> Iterator[None]:
    """An allocation that fails (torch raises RuntimeError) is the user's size choice: one line (naming
    the pair when ``job`` is given, as a batch needs)."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:
        if not isinstance(error, MemoryError) and "allocate" not in str(error):
            raise
        what = "this pair" if job is None else f"{job.source} with {describe_reference(job.reference)}"
        at = f" at --size {size}" if size is not None else ""
        raise UserError(f"not enough memory to re-colour {what}{at}; try a smaller --size") from None


# ------------------------------------------------------------------------------------------ the logs


@contextlib.contextmanager
def held_logs() -> Iterator[None]:
    """Hold this package's log records while a step runs: on an error they are dropped (the error line
    stands alone), otherwise they are logged after it."""
    held: list[logging.LogRecord] = []
    with _captured(held.append):
        yield
    for record in held:
        logging.getLogger(record.name).handle(record)


@contextlib.contextmanager
def _captured(keep: Callable[[logging.LogRecord], Any]) -> Iterator[None]:
    """This package's log records go to ``keep`` instead of the handlers while the block runs."""

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            keep(record)

    package = logging.getLogger("recolorize")
    handler, propagate = Keep(), package.propagate
    package.addHandler(handler)
    package.propagate = False
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.propagate = propagate


# ------------------------------------------------------------------------------------------ one job


class _References:
    """Decoded references, each decoded once and the ``keep`` most recently used kept (0 for one pair, so
    that its pixels go as soon as the model has its copy)."""

    def __init__(self, max_pixels: int, keep: int) -> None:
        self.max_pixels, self.keep = max_pixels, keep
        self.kept: dict[Reference, Any] = {}

    def get(self, reference: Reference) -> LoadedImage | list[LoadedImage]:
        from recolorize.imaging import load_image

        decoded = self.kept.pop(reference, None)
        if decoded is None:
            paths = reference_paths(reference)
            decoded = [load_image(p, max_pixels=self.max_pixels) for p in paths]
            decoded = decoded if isinstance(reference, tuple) else decoded[0]
        if self.keep:
            self.kept[reference] = decoded  # most recently used last
            while len(self.kept) > self.keep:
                del self.kept[next(iter(self.kept))]
        return decoded


class _Run:
    """What the jobs of one run share: settings, model (loaded on first use), decoded references."""

    def __init__(
        self,
        settings: TransferSettings,
        weights: Path | None,
        batch: bool,
        recolorizer: Any = None,
        threads: int | None = None,
    ) -> None:
        self.settings, self.weights, self.batch = settings, weights, batch
        self.recolorizer = recolorizer
        self.threads = threads  # the networks' threads (None: every core this process may use)
        self.references = _References(settings.pixel_limit, keep=2 if batch else 0)
        self._loading: Future[Recolorizer] | None = None

    def start_loading(self) -> None:
        """Load the model in a thread while this one decodes the first photos (``model`` waits for it). One
        pair's transfer starts once the first graph is in, the others loading beside it (a graph's error is
        then the pair's); a batch's ``model`` waits for all three, so that a broken model stops the run."""
        if self.recolorizer is None and self._loading is None:
            wait = self.batch
            self._loading = in_background(
                lambda: load_recolorizer(self.weights, self.settings, self.threads, wait=wait)
            )

    def model(self) -> Recolorizer:
        if self.recolorizer is None:
            loading, self._loading = self._loading, None
            if loading is not None:
                self.recolorizer = loading.result()  # its error, if any, is raised here as if loaded here
            else:
                self.recolorizer = load_recolorizer(self.weights, self.settings, self.threads)
        return self.recolorizer


def transfer_one(run: _Run, job: Job) -> None:
    """One job: decode the source, get the reference, check the output is still free (a batch's outputs
    were not checked one by one while planning), re-colour, write."""
    from recolorize.imaging import check_output_fits, load_image

    settings = run.settings
    check_output_fits(job.output, job.source, settings.pixel_limit)  # the format's limits, from the header
    source = load_image(job.source, max_pixels=settings.pixel_limit)
    reference = run.references.get(job.reference)
    if run.batch:
        check_output(job, settings.overwrite)
    recolorizer = run.model()
    wants_float = settings.lut is not None  # the LUT is fitted to the float result
    with out_of_memory_is_an_error(settings.size, job if run.batch else None):
        prepared = recolorizer.prepare(source, reference)
        del reference  # only its network copy is used from here: free its pixels for the full-size step
        dtype = _render_dtype(job, source, wants_float)
        rgb = recolorizer.render_array(prepared, settings.strength, dtype=dtype)
        base = None
        if wants_float:  # the model's own colour prior as a LUT: the LUT is it plus the fitted change
            from recolorize.inference.lut.from_transfer import prior_lut

            base = prior_lut(prepared, settings.strength)
        del prepared
    _write_outputs(job, _for_saving(source, rgb), rgb, settings, base)


def _render_dtype(job: Job, source: LoadedImage, wants_float: bool) -> type:
    """uint8 when the output stores 8-bit sRGB samples (``takes_8bit_srgb``): the full-resolution step then
    writes them tile by tile, the same samples without a full-size float copy; else float32."""
    import numpy as np

    from recolorize.imaging import output_format, takes_8bit_srgb

    if not wants_float and takes_8bit_srgb(source, output_format(job.output)):
        return np.uint8
    return np.float32


def _for_saving(source: LoadedImage, rgb: Any) -> Any:
    """What the saver needs of ``source`` for ``rgb``: its metadata alone when ``rgb`` holds 8-bit samples
    (the float pixels can go before the encoder copies the samples), else the whole image."""
    return source.metadata_only() if getattr(rgb, "dtype", None) == "uint8" else source


def _write_outputs(job: Job, source: Any, rgb: Any, settings: TransferSettings, base: Any) -> None:
    """Write ``rgb`` to ``job.output`` like ``source`` (atomically; without ``overwrite`` a file written
    meanwhile, say by another run, is not replaced), then with ``settings.lut`` the transfer's look fitted
    to it: the model's prior LUT ``base`` exactly plus the change on top, as ``recolorize lut`` writes it."""
    from recolorize.imaging import save_image

    save_image(
        job.output,
        rgb,
        like=source,
        quality=settings.quality,
        overwrite=settings.overwrite,
        source_path=job.source,
    )
    if settings.lut is not None:
        from recolorize.inference.lut import Lut3D, write_cube
        from recolorize.inference.lut.from_transfer import lut_from_rendering

        lut = lut_from_rendering(source.rgb, rgb, base) if settings.strength > 0 else Lut3D.identity()
        write_cube(lut, settings.lut, overwrite=settings.overwrite)
        logger.info("wrote %s (%d^3 LUT)", settings.lut, lut.size)


# ------------------------------------------------------------------------------------------ the run


@dataclass
class TransferReport:
    """What a run did: the jobs written, those skipped (their output existed), those that failed."""

    written: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failures: list[tuple[Job, BaseException]] = field(default_factory=list)


def run_transfer(
    plan: Plan,
    settings: TransferSettings,
    weights: Path | None = None,
    recolorizer: Recolorizer | None = None,
    on_failure: Callable[[Job, BaseException], None] | None = None,
) -> TransferReport:
    """Run ``plan`` (from :func:`plan_transfer`; ``weights`` from :func:`check_model`, or ``recolorizer``
    already loaded from them): decode, re-colour and write each job, in order, a batch with a progress bar.

    Outputs that exist are skipped (logged) unless ``settings.overwrite``. Each job fails alone: its error
    is kept in the report and handed to ``on_failure`` as it happens. What stops the run is raised: a
    folder's shared reference that does not decode, or a model that does not load.
    """
    report = TransferReport()
    todo = []
    for job in plan.jobs:
        if job.output.exists() and not settings.overwrite:
            logger.info("skipping %s: %s exists (use --overwrite)", job.source, job.output)
            report.skipped.append(job)
        else:
            todo.append(job)
    if not todo:
        return report
    run = _Run(settings, weights, plan.batch, recolorizer)
    workers = worker_count(settings.jobs, len(todo), cores()) if plan.batch else 1
    if workers == 1:
        run.start_loading()  # while the reference and the first source decode
    if plan.shared_reference is not None:
        with held_logs():
            run.references.get(plan.shared_reference)
    if workers == 1 and plan.batch:
        run.model()  # a batch's model error is the command's, not each photo's
    outcomes = _in_pool(run, todo, workers) if workers > 1 else (_attempt(run, job) for job in todo)
    with _progress(len(todo), plan.batch) as progress:
        for job, error in outcomes:
            if error is None:
                report.written.append(job)
            else:
                report.failures.append((job, error))
                if on_failure is not None:
                    on_failure(job, error)
            progress.update()
    return report


class _NoProgress:
    """What one pair shows instead of a bar: nothing (and tqdm is not imported, ~14 ms of every command)."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self) -> None:
        return None


def _progress(total: int, batch: bool) -> Any:
    """A batch's progress bar (tqdm), or nothing for one pair."""
    if not batch:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, desc="re-colouring", unit="photo")


def _attempt(run: _Run, job: Job) -> tuple[Job, BaseException | None]:
    """``transfer_one`` here, its log lines held until it succeeded; its error returned."""
    try:
        with held_logs():
            transfer_one(run, job)
    except Exception as error:  # noqa: BLE001 - one bad pair must never stop the batch
        return job, error
    return job, None


# ---------------------------------------------------------------------------------- worker processes


def worker_count(jobs: int, photos: int, cores: int) -> int:
    """Processes for ``jobs``: no more than the photos to do and the cores (a process beyond the cores
    adds only its memory); 1 means the batch runs in this process."""
    return max(1, min(jobs, photos, cores))


def _in_pool(run: _Run, todo: list[Job], workers: int) -> Iterator[tuple[Job, BaseException | None]]:
    """The jobs shared out to ``workers`` processes, their outcomes in the jobs' order.

    Each worker is kept with ``QUEUED_PER_WORKER`` photos, so one that dies (say, out of memory) loses only
    those (each named); the rest then run in this process. Leaving (done, Ctrl-C, an error) stops the
    workers at once: what they were writing is abandoned before it is renamed.
    """
    share = max(1, cores() // workers)
    with _thread_variables(share):  # the helpers start as they are needed: set while the pool lives
        yield from _pool_outcomes(run, todo, workers, share)


def _pool_outcomes(
    run: _Run, todo: list[Job], workers: int, share: int
) -> Iterator[tuple[Job, BaseException | None]]:
    """``_in_pool``'s work, the helpers each running on ``share`` cores."""
    import multiprocessing  # here: a run without helpers does not pay for their machinery (~20 ms)
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),  # no fork of a process that has threads
        initializer=_start_worker,
        initargs=(run.settings, run.weights, logging.getLogger("recolorize").getEffectiveLevel(), share),
    )
    pending: deque[tuple[Job, Future]] = deque()
    broken = False
    try:
        for job in todo:
            future = None if broken else _submit(pool, job)
            if future is None:  # the pool is gone: the rest is done here, after what it still holds
                broken = True
                while pending:
                    yield _collect(*pending.popleft())
                yield _attempt(run, job)
                continue
            pending.append((job, future))
            while pending and (len(pending) > QUEUED_PER_WORKER * workers or pending[0][1].done()):
                yield _collect(*pending.popleft())
        while pending:
            yield _collect(*pending.popleft())
    finally:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.is_alive():
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _thread_variables(count: int) -> Iterator[None]:
    """``THREAD_VARIABLES`` set to ``count`` while helper processes may start (then put back): a helper's
    NumPy would otherwise start a BLAS thread per core, and N helpers' threads fought over N cores."""
    import os

    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(count) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _submit(pool: ProcessPoolExecutor, job: Job) -> Future | None:
    """``job`` handed to a worker; None once the pool is broken."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return pool.submit(_work, job)
    except (BrokenProcessPool, RuntimeError):
        return None


def _collect(job: Job, future: Future) -> tuple[Job, BaseException | None]:
    """A worker's outcome: its log lines logged here (a success), or its error."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        lines = future.result()
    except BrokenProcessPool:
        remove_temporaries(job.output)  # the helper died inside atomic_write: its half-written photo
        return job, RuntimeError("the helper process re-colouring it stopped (out of memory?)")
    except Exception as error:  # noqa: BLE001 - the job's own error, named by the caller
        return job, error
    for name, level, message in lines:
        record = logging.makeLogRecord(
            {"name": name, "levelno": level, "levelname": logging.getLevelName(level), "msg": message}
        )
        logging.getLogger(name).handle(record)
    return job, None


#: A worker's log lines: (logger name, level, message), logged by the parent in the jobs' order.
Lines = list[tuple[str, int, str]]
_WORKER: _Run | None = None


def _start_worker(settings: TransferSettings, weights: Path | None, level: int, threads: int) -> None:
    """In a worker: load the model once, its networks on ``threads`` threads (the worker's share of the
    cores). Ctrl-C is the parent's to handle; SIGTERM (and SIGHUP, a closed terminal) ends a photo cleanly
    (``atomic_write`` removes its temporary file).

    Why a share, not every core: N workers each running every core fought over them (20 1-MP photos on 2
    cores: 1.10 photos/s with ``jobs=2`` against 1.23 with one process). The files are ``jobs=1``'s, byte for
    byte: the model gives the same bits on any number of threads (``onnx_model.ONE_THREAD_GRAPHS``), and
    the command's BLAS runs on one thread in every process (``cli.one_blas_thread``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        signal.signal(signal.SIGHUP, lambda *_: sys.exit(1))
    logging.getLogger("recolorize").setLevel(level)
    limit_cores(threads)  # the NumPy pieces too, not only the networks
    global _WORKER
    _WORKER = _Run(settings, weights, batch=True, threads=threads)
    _WORKER.model()


def _work(job: Job) -> Lines:
    """Re-colour and write one photo in a worker; its log lines are returned for the parent to log (a
    failed photo's are dropped with it, as in the parent)."""
    assert _WORKER is not None, "the worker's initializer did not run"
    records: list[logging.LogRecord] = []
    try:
        with _captured(records.append):
            transfer_one(_WORKER, job)
    except Exception as error:  # noqa: BLE001 - sent to the parent, which names the photo
        raise _portable(error) from None
    return [(record.name, record.levelno, record.getMessage()) for record in records]


def _portable(error: Exception) -> Exception:
    """``error`` in a form that surely crosses to the parent: a ``UserError`` (its one line) or a built-in
    exception as it is (their arguments are plain values), anything else as a RuntimeError that names it."""
    if isinstance(error, UserError):
        return UserError(str(error))
    if type(error).__module__ == "builtins":
        return error
    return RuntimeError(f"{type(error).__name__}: {error}")
