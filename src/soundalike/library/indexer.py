"""Scanning folders and indexing new or changed files with parallel worker processes."""

from __future__ import annotations

import bisect
import concurrent.futures as cf
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import filelock

from .. import analysis, audio, musical
from ..errors import ParameterError
from ..models import load_model, torch_device
from . import postgres
from .catalogue import Catalogue, LibraryError, ModelDescription, TrackRecord, read_only, writable

# Patches analysed per track: on the soundtracks corpus, 10 spread patches retrieve as
# well as every patch (default model: mAP 0.360 against 0.359) at 4.8x the speed
# (bench/bench_quality.py --full, docs/benchmarks.md).
DEFAULT_EXCERPT = 10
# A run that would remove more than this share of a library's tracks (and more than
# PRUNE_MIN_TRACKS) removes nothing without --prune: an unmounted drive or a renamed
# folder looks like every file under it was deleted.
PRUNE_SHARE = 0.5
PRUNE_MIN_TRACKS = 10
PARENT_CHECK_SECONDS = 1.0  # how often a worker checks that the index run is still alive
log = logging.getLogger(__name__)
AUDIO_EXTENSIONS = frozenset({".mp3", ".m4a", ".mp4", ".aac", ".ogg", ".oga", ".opus", ".flac", ".wav", ".au",
                              ".aif", ".aiff", ".wma", ".wv", ".ape", ".mka", ".webm"})


@dataclasses.dataclass(frozen=True)
class FileState:
    path: str  # absolute, as stored
    size: int
    mtime_ns: int
    excerpt: int | None = None  # patches to analyse it with, when not the run's


@dataclasses.dataclass
class Plan:
    """What an index run will do: analyse ``todo``, drop ``removed`` (files known to be
    gone: their folder was listed without them). ``missing``: library tracks a
    re-analysis cannot reach (their files are not there, outside the roots).
    ``unreadable``: (path, reason) of folders and files the scan could not read; the
    tracks below them are kept (only those where the library has tracks are listed)."""

    todo: list[FileState]
    unchanged: int
    failed_before: int  # unchanged files that failed last time (skipped)
    removed: list[str]
    missing: list[str] = dataclasses.field(default_factory=list)
    unreadable: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    removed_tracks: int = 0  # of ``removed``, how many are tracks (not failures, not staged re-analyses)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One file's result: ``reason`` is None when it was indexed."""

    path: str
    reason: str | None
    audio_seconds: float = 0.0


@dataclasses.dataclass
class Scan:
    """What a walk through folders found: the audio files, the entries of every folder
    it could list, what it could not read, as (path, reason), and the links that lead
    nowhere (as to an unmounted drive)."""

    files: dict[str, FileState] = dataclasses.field(default_factory=dict)
    listed: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    unreadable: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    dangling: list[str] = dataclasses.field(default_factory=list)

    def known_gone(self, path: str, root: Path) -> bool:
        """Whether ``path`` (under ``root``) is known to be gone: the nearest of its
        folders that was listed does not hold the next step toward it. A path below a
        folder that could not be listed is not known to be gone."""
        child, folder = path, os.path.dirname(path)
        while folder not in self.listed:
            if len(folder) <= len(str(root)):  # reached the root, unlisted
                return False
            child, folder = folder, os.path.dirname(folder)
        return os.path.basename(child) not in self.listed[folder]


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def scan(roots: Iterable[str | os.PathLike]) -> Scan:
    """Audio files (by extension) under ``roots``, in sorted order; hidden files and
    folders are skipped, and so are links to folders (a file has one path in the
    library: give a linked folder as a root of its own). A root that does not exist
    raises ParameterError; folders and files that cannot be read are in ``unreadable``."""
    result = Scan()
    for root in roots:
        root = _absolute(root)
        if root.is_file():
            _add_file(result, str(root))
            continue
        if not root.is_dir():
            raise ParameterError(f"{root}: no such file or folder")
        folders = [str(root)]
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError as exc:
                result.unreadable.append((folder, _reason(exc)))
                continue
            result.listed[folder] = frozenset(e.name for e in entries)
            below = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        below.append(entry.path)
                    elif os.path.splitext(entry.name)[1].lower() not in AUDIO_EXTENSIONS:
                        continue
                    elif entry.is_symlink() and not os.path.exists(entry.path):
                        result.dangling.append(entry.path)
                    else:
                        _add_file(result, entry.path)
                except OSError as exc:
                    result.unreadable.append((entry.path, _reason(exc)))
            folders.extend(reversed(below))  # depth first, in sorted order
    return result


def _absolute(root: str | os.PathLike) -> Path:
    """``root`` made absolute, its links resolved; a loop of links is a ParameterError."""
    try:
        return Path(root).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ParameterError(f"{root}: cannot be resolved ({exc})") from None


def _add_file(result: Scan, path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        result.unreadable.append((path, _reason(exc)))
        return
    result.files[path] = FileState(path, st.st_size, st.st_mtime_ns)


def find_audio(roots: Iterable[str | os.PathLike]) -> Iterator[FileState]:
    """Audio files (by extension) under ``roots``: :func:`scan`'s files."""
    yield from scan(roots).files.values()


def plan(catalogue: Catalogue, roots: Iterable[str | os.PathLike], *, retry_failed: bool = False,
         excerpt: int = DEFAULT_EXCERPT, reanalyze: bool = False) -> Plan:
    """Compare the files under ``roots`` with the catalogue.

    New and changed files are to be analysed, and so are tracks analysed with fewer
    patches than ``excerpt`` now asks for (0 = every patch): asking for fewer keeps
    the better analysis already stored. With ``reanalyze`` (a re-analysis with another
    model has begun, see :meth:`Catalogue.begin_staging`), every track of the library,
    wherever it is, and every new file under ``roots`` is to be analysed, except what
    the re-analysis already did and has not changed since; a track keeps the fuller of
    its own excerpt and ``excerpt``.
    """
    roots = [_absolute(r) for r in roots]
    known = catalogue.file_states()
    walked = scan(roots)
    found = walked.files
    staged = catalogue.staged_states() if reanalyze else {}
    removed = sorted(p for p in {*known, *staged} if p not in found and any(_gone(walked, p, r) for r in roots))
    tracks = sorted(p for p, state in known.items() if not state[2])
    lost_links = [(link, "a link to something not there") for link in walked.dangling if _holds(tracks, link)]
    unreadable = []
    for path, reason in walked.unreadable:
        if _holds(tracks, path):
            unreadable.append((path, reason))
        else:  # a lost+found folder, say: nothing of the library's is there
            log.info("cannot read %s (%s); no track of the library is there", path, reason)
    result = Plan([], 0, 0, removed, unreadable=unreadable + lost_links,
                  removed_tracks=len(set(removed).intersection(tracks)))
    candidates = dict(found)
    removed_set = set(removed)
    if reanalyze:  # the library's tracks outside the roots too
        for path, (_, _, failed, stored) in known.items():
            if failed or path in removed_set:
                continue
            state = candidates.get(path) or _file_state(path)
            if state is None:
                result.missing.append(path)
            else:
                candidates[path] = dataclasses.replace(state, excerpt=_fuller(stored, excerpt))
    for f in candidates.values():
        state = known.get(f.path)
        failed_before = state is not None and state[2] and (state[0], state[1]) == (f.size, f.mtime_ns)
        if failed_before and not retry_failed:
            result.failed_before += 1
        elif reanalyze:
            if staged.get(f.path) == (f.size, f.mtime_ns):
                result.unchanged += 1
            else:
                result.todo.append(f)
        elif state is None or (state[0], state[1]) != (f.size, f.mtime_ns) or _too_few_patches(state[3], excerpt) \
                or state[2]:
            result.todo.append(f)
        else:
            result.unchanged += 1
    return result


def _holds(tracks: list[str], path: str) -> bool:
    """Whether ``path`` is one of the sorted library paths ``tracks``, or a folder of some."""
    i = bisect.bisect_left(tracks, path)
    if i < len(tracks) and tracks[i] == path:
        return True
    i = bisect.bisect_left(tracks, path + os.sep)  # the first path below the folder, if any
    return i < len(tracks) and tracks[i].startswith(path + os.sep)


def _gone(walked: Scan, path: str, root: Path) -> bool:
    """Whether ``path`` is known to be gone from ``root`` (a folder, or a file given itself)."""
    if path == str(root):
        return True  # a file root that exists is always found
    return path.startswith(str(root) + os.sep) and walked.known_gone(path, root)


def _file_state(path: str) -> FileState | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return FileState(path, st.st_size, st.st_mtime_ns)


def needs_prune(removed: int, tracks: int) -> bool:
    """Whether removing ``removed`` of a library's ``tracks`` is too many to do unasked."""
    return removed > PRUNE_MIN_TRACKS and removed > PRUNE_SHARE * tracks


@contextlib.contextmanager
def exclusive(library_path: str | os.PathLike, on_wait=lambda: None) -> Iterator[None]:
    """Hold the library's writer lock (``LIB.lock`` beside it) for one index or repair
    run; a second run calls ``on_wait`` and waits. The lock dies with its process. A
    library in PostgreSQL takes several runs at once (each track its own transaction)."""
    if postgres.is_url(library_path):
        yield
        return
    library_path = Path(library_path)
    lock = filelock.FileLock(f"{library_path}.lock")
    try:
        library_path.parent.mkdir(parents=True, exist_ok=True)
        if not writable(library_path):
            raise read_only(library_path)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            on_wait()
            lock.acquire()
    except OSError as exc:
        raise LibraryError(f"{library_path}: cannot lock it for writing ({exc.strerror or exc})") from None
    try:
        yield
    finally:
        lock.release()


def _too_few_patches(stored: int | None, wanted: int) -> bool:
    """Whether a track analysed with ``stored`` spread patches (0 = all) lacks what ``wanted`` asks."""
    return bool(stored) and (wanted == 0 or wanted > stored)


def _fuller(stored: int | None, wanted: int) -> int:
    """The fuller of two excerpts (0 = every patch)."""
    return wanted if stored is None or _too_few_patches(stored, wanted) else stored


def analyse_file(f: FileState, model, excerpt: int) -> TrackRecord:
    """Analyse one file (or a Subsonic server's song) into a catalogue record; raises
    SoundalikeError on bad media."""
    if f.path.startswith("subsonic+"):
        from ..subsonic.remote import analyse_song

        return analyse_song(f, model, excerpt)
    return analyse_source(f, audio.read_metadata(f.path), f.path, model, excerpt)


def analyse_source(f: FileState, meta, source, model, excerpt: int) -> TrackRecord:
    """The catalogue record of ``f`` with tags ``meta``, its audio read from ``source``
    (a path, or a seekable file object): the network's analysis and the musical measures."""
    measure = musical.enabled()
    result = analysis.analyse_track(source, model, excerpt=excerpt, duration=meta.duration, keep_audio=measure)
    measures = musical.measure(list(result.clips), model.window.sample_rate, meta.channels) if measure else None
    return track_record(f, meta, result, measures)


def track_record(f: FileState, meta, result: analysis.Analysis, measures: musical.Musical | None) -> TrackRecord:
    """The catalogue record of ``f`` with tags ``meta``, its network's ``result`` and musical ``measures``."""
    return TrackRecord(path=f.path, size=f.size, mtime_ns=f.mtime_ns, metadata=meta, excerpt=result.excerpt,
                       vector=analysis.aggregate(result.embeddings), tags=result.tag_probabilities,
                       patches=result.embeddings, starts=result.starts.astype("float32"), musical=measures)


# --- worker processes ----------------------------------------------------------------
_MODEL = None
# function -> args: each called in every worker process as it starts (module-level
# functions, picklable args: e.g. a Subsonic server's credentials, never put in the environment)
WORKER_SETUP: dict = {}


def _init_worker(model_name: str, threads: int, parent: int, setup: tuple = (), device: str = "cpu") -> None:
    import torch

    global _MODEL
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    for function, args in setup:
        function(*args)
    _MODEL = load_model(model_name, device)


def _exit_with_parent(parent: int) -> None:
    """In a worker: exit when the index run that started it is gone (even killed with -9,
    which leaves no chance to stop its workers): the worker is then re-parented."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


def _work(f: FileState, excerpt: int):
    """Runs in a worker: (record, None) or (None, reason)."""
    try:
        return analyse_file(f, _MODEL, excerpt if f.excerpt is None else f.excerpt), None
    except Exception as exc:  # a bad file must not stop the run: record why instead
        return None, failure_reason(exc)


def failure_reason(exc: Exception) -> str:
    """Why a file failed, as the library records it."""
    from ..errors import MediaError

    return exc.reason if isinstance(exc, MediaError) else f"{type(exc).__name__}: {exc}"


def describe(model_name: str) -> ModelDescription:
    """What the catalogue records of a model (loading it)."""
    return ModelDescription.of(model_name, load_model(model_name))


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes, so cores are not oversubscribed."""
    return max(1, (os.cpu_count() or 1) // workers)


def storer(catalogue: Catalogue, model_name: str, model, reanalyze: bool):
    """``store(f, record, reason) -> Outcome``: puts a file's record (or why it failed) into
    the catalogue, one transaction each, or stages it for a re-analysis; binds the library
    to ``model`` first when it is not re-analysing."""
    if reanalyze:
        put, put_failure = catalogue.stage, catalogue.stage_failure
    else:
        catalogue.bind_model(ModelDescription.of(model_name, model))
        put, put_failure = catalogue.put, catalogue.put_failure

    def store(f: FileState, record: TrackRecord | None, reason: str | None) -> Outcome:
        if record is None:
            put_failure(f.path, f.size, f.mtime_ns, reason, model=model_name)
            return Outcome(f.path, reason)
        put(record, model=model_name)
        return Outcome(f.path, None, record.metadata.duration or 0.0)

    return store


CRASHED = "the analysis process crashed on this file"


def check_settings(workers: int, excerpt: int) -> None:
    """ParameterError for a run of fewer than one worker or a negative excerpt."""
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    if excerpt < 0:
        raise ParameterError(f"excerpt must be >= 0 patches (0 = whole tracks), got {excerpt}")


def run(catalogue: Catalogue, todo: list[FileState], *, model_name: str, workers: int,
        excerpt: int = DEFAULT_EXCERPT, reanalyze: bool = False, device: str = "cpu") -> Iterator[Outcome]:
    """Analyse ``todo`` and store each result as soon as it arrives, one transaction each.

    Yields an :class:`Outcome` per file, in completion order. ``workers`` > 1 uses
    that many processes (spawned, each with ``threads_per_worker`` torch threads);
    at most ``2 * workers`` files are in flight, and they are all a kill can lose.
    With ``reanalyze`` the results are staged (the re-analysis with ``model_name`` must
    have begun: :meth:`Catalogue.begin_staging`) for a switch of the whole library
    (:meth:`Catalogue.finish_staging`) instead of stored as tracks. A result the library
    no longer accepts (another process switched its model meanwhile) raises LibraryError.
    The network runs on ``device`` ("cuda": every process shares the GPU; decoding stays
    on the CPU).
    """
    check_settings(workers, excerpt)
    if not todo:
        return
    torch_device(device)  # a missing GPU is said before any process starts
    workers = min(workers, len(todo))  # no process without a file to analyse
    model = load_model(model_name, device if workers == 1 else "cpu")  # else each worker loads its own
    store = storer(catalogue, model_name, model, reanalyze)
    if workers == 1:
        global _MODEL
        _MODEL = model
        for f in todo:
            yield store(f, *_work(f, excerpt))
        return
    pending, suspects = deque(todo), deque()
    context = multiprocessing.get_context("spawn")
    while pending or suspects:
        # After a worker died, the files it might have been analysing run one at a
        # time in a fresh pool: the one that kills it again is recorded as failed.
        pool = cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                      initargs=(model_name, threads_per_worker(workers), os.getpid(),
                                                tuple(WORKER_SETUP.items()), device))
        in_flight: dict[cf.Future, tuple[FileState, bool]] = {}
        broken = False
        try:
            while not broken and (pending or suspects or in_flight):
                if suspects and not in_flight:
                    f = suspects.popleft()
                    in_flight[pool.submit(_work, f, excerpt)] = (f, True)
                while not suspects and pending and len(in_flight) < 2 * workers:
                    f = pending.popleft()
                    in_flight[pool.submit(_work, f, excerpt)] = (f, False)
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    f, alone = in_flight.pop(future)
                    try:
                        record, reason = future.result()
                    except cf.process.BrokenProcessPool:
                        broken = True
                        if alone:
                            yield store(f, None, CRASHED)
                        else:
                            suspects.append(f)
                        continue
                    yield store(f, record, reason)
            suspects.extend(f for f, _ in in_flight.values())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
