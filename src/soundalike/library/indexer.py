"""Scanning folders and indexing new or changed files with parallel worker processes."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from .. import analysis, audio
from ..errors import ParameterError
from ..models import load_model
from .catalogue import Catalogue, ModelDescription, TrackRecord

# Patches analysed per track: on the soundtracks corpus, 10 spread patches retrieve as
# well as every patch (default model: mAP 0.360 against 0.359) at 4.8x the speed
# (bench/bench_quality.py --full, docs/benchmarks.md).
DEFAULT_EXCERPT = 10
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
    """What an index run will do: analyse ``todo``, drop ``removed``. ``missing``: library
    tracks a re-analysis cannot reach (their files are not there, outside the roots)."""

    todo: list[FileState]
    unchanged: int
    failed_before: int  # unchanged files that failed last time (skipped)
    removed: list[str]
    missing: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One file's result: ``reason`` is None when it was indexed."""

    path: str
    reason: str | None
    audio_seconds: float = 0.0


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root`` in sorted order, skipping hidden files and folders."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from (Path(folder) / f for f in sorted(files) if not f.startswith("."))


def find_audio(roots: Iterable[str | os.PathLike]) -> Iterator[FileState]:
    """Audio files (by extension) under ``roots``; hidden files and folders are skipped."""
    for root in roots:
        root = Path(root).expanduser().resolve()
        if root.is_file():
            candidates = [root]
        elif root.is_dir():
            candidates = _walk(root)
        else:
            raise ParameterError(f"{root}: no such file or folder")
        for path in candidates:
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                state = _file_state(str(path))
                if state is not None:
                    yield state


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
    roots = [Path(r).expanduser().resolve() for r in roots]
    known = catalogue.file_states()
    found = {f.path: f for f in find_audio(roots)}
    staged = catalogue.staged_states() if reanalyze else {}
    under = [str(r) + os.sep for r in roots if r.is_dir()]
    removed = sorted(p for p in {*known, *staged} if p not in found and (any(p.startswith(u) for u in under) or
                                                                        any(p == str(r) for r in roots)))
    result = Plan([], 0, 0, removed)
    candidates = dict(found)
    if reanalyze:  # the library's tracks outside the roots too
        for path, (_, _, failed, stored) in known.items():
            if failed or path in removed:
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


def _file_state(path: str) -> FileState | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return FileState(path, st.st_size, st.st_mtime_ns)


def _too_few_patches(stored: int | None, wanted: int) -> bool:
    """Whether a track analysed with ``stored`` spread patches (0 = all) lacks what ``wanted`` asks."""
    return bool(stored) and (wanted == 0 or wanted > stored)


def _fuller(stored: int | None, wanted: int) -> int:
    """The fuller of two excerpts (0 = every patch)."""
    return wanted if stored is None or _too_few_patches(stored, wanted) else stored


def analyse_file(f: FileState, model, excerpt: int) -> TrackRecord:
    """Analyse one file into a catalogue record; raises SoundalikeError on bad media."""
    meta = audio.read_metadata(f.path)
    result = analysis.analyse_track(f.path, model, excerpt=excerpt, duration=meta.duration)
    return TrackRecord(path=f.path, size=f.size, mtime_ns=f.mtime_ns, metadata=meta, excerpt=result.excerpt,
                       vector=analysis.aggregate(result.embeddings), tags=result.tag_probabilities,
                       patches=result.embeddings, starts=result.starts.astype("float32"))


# --- worker processes ----------------------------------------------------------------
_MODEL = None


def _init_worker(model_name: str, threads: int) -> None:
    import torch

    global _MODEL
    torch.set_num_threads(threads)
    _MODEL = load_model(model_name)


def _work(f: FileState, excerpt: int):
    """Runs in a worker: (record, None) or (None, reason)."""
    try:
        return analyse_file(f, _MODEL, excerpt if f.excerpt is None else f.excerpt), None
    except Exception as exc:  # a bad file must not stop the run: record why instead
        from ..errors import MediaError

        reason = exc.reason if isinstance(exc, MediaError) else f"{type(exc).__name__}: {exc}"
        return None, reason


def describe(model_name: str) -> ModelDescription:
    """What the catalogue records of a model (loading it)."""
    return ModelDescription.of(model_name, load_model(model_name))


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes, so cores are not oversubscribed."""
    return max(1, (os.cpu_count() or 1) // workers)


def run(catalogue: Catalogue, todo: list[FileState], *, model_name: str, workers: int,
        excerpt: int = DEFAULT_EXCERPT, reanalyze: bool = False) -> Iterator[Outcome]:
    """Analyse ``todo`` and store each result as soon as it arrives, one transaction each.

    Yields an :class:`Outcome` per file, in completion order. ``workers`` > 1 uses
    that many processes (spawned, each with ``threads_per_worker`` torch threads);
    at most ``2 * workers`` files are in flight, and they are all a kill can lose.
    With ``reanalyze`` the results are staged (the re-analysis with ``model_name`` must
    have begun: :meth:`Catalogue.begin_staging`) for a switch of the whole library
    (:meth:`Catalogue.finish_staging`) instead of stored as tracks. A result the library
    no longer accepts (another process switched its model meanwhile) raises LibraryError.
    """
    if workers < 1:
        raise ParameterError(f"workers must be >= 1, got {workers}")
    if excerpt < 0:
        raise ParameterError(f"excerpt must be >= 0 patches (0 = whole tracks), got {excerpt}")
    if not todo:
        return
    model = load_model(model_name)
    if reanalyze:
        put, put_failure = catalogue.stage, catalogue.stage_failure
    else:
        catalogue.bind_model(ModelDescription.of(model_name, model))
        put, put_failure = catalogue.put, catalogue.put_failure

    def store(f: FileState, record, reason) -> Outcome:
        if record is None:
            put_failure(f.path, f.size, f.mtime_ns, reason, model=model_name)
            return Outcome(f.path, reason)
        put(record, model=model_name)
        return Outcome(f.path, None, record.metadata.duration or 0.0)

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
                                      initargs=(model_name, threads_per_worker(workers)))
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
                            yield store(f, None, "the analysis process crashed on this file")
                        else:
                            suspects.append(f)
                        continue
                    yield store(f, record, reason)
            suspects.extend(f for f, _ in in_flight.values())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
