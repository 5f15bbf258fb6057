"""Indexing on a Ray cluster (``soundalike index --ray ADDRESS``).

Ray Data streams the files through two stages: a CPU task per file reads its tags,
decodes and cuts it into the network's windows (:func:`analysis.cut_track`, exactly what
local indexing analyses) and measures its tempo, key and loudness; ``workers`` actors,
each loading the model once, run the network. This process stores each result as it
arrives, one transaction each, as local indexing does (:func:`indexer.storer`): a run
killed midway loses only the files in flight, and the next run goes on from there.
A decoding task whose process dies is retried by Ray (``RETRIES`` times); a network actor
that dies is restarted for the next files, without the one it died on. A file whose
decoding or analysis raises, or whose process dies, is recorded as failed with its reason.

``ADDRESS``: ``local`` starts a private cluster on this machine, listening on loopback
only; anything else is handed to ``ray.init`` (``auto``, ``HOST:6379``,
``ray://HOST:10001``). Every node needs this version of soundalike installed and the
music at the same paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import warnings
from collections.abc import Iterator

from .. import analysis, audio, musical
from ..errors import ParameterError
from ..models import load_model
from .catalogue import Catalogue
from .indexer import (CRASHED, FileState, Outcome, check_settings, failure_reason, storer, threads_per_worker,
                      track_record)

RETRIES = 2  # times Ray runs a file's task again after its process died
LOCAL = "local"


def run(catalogue: Catalogue, todo: list[FileState], *, model_name: str, address: str, workers: int,
        excerpt: int, reanalyze: bool = False, device: str = "cpu") -> Iterator[Outcome]:
    """:func:`indexer.run` with decoding and the network on the Ray cluster at ``address``
    (``workers`` network actors, on the cluster's GPUs with ``device`` "cuda": they share
    them out evenly, one GPU an actor at most); yields an :class:`Outcome` per file as results arrive."""
    check_settings(workers, excerpt)
    if not todo:
        return
    model = load_model(model_name)
    store = storer(catalogue, model_name, model, reanalyze)
    # this machine's cores shared out locally; on a cluster, one core an actor (its nodes' sizes are theirs)
    threads = threads_per_worker(workers) if address == LOCAL else 1
    with _connected(address, workers * threads):
        import ray.data

        gpus = _gpus_per_actor(device, workers, ray.cluster_resources().get("GPU", 0), address)
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # our own outcomes say which files failed, and why
        context = ray.data.DataContext.get_current()
        context.max_errored_blocks = -1  # a file whose process keeps dying is dropped, then recorded below
        context.enable_progress_bars = False  # the command shows its own
        files = [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns,
                  "excerpt": excerpt if f.excerpt is None else f.excerpt} for f in todo]
        with warnings.catch_warnings():
            # Ray Data retries a task whose process died forever unless told otherwise, and only its
            # deprecated remote arguments tell it (so ray < 2.64). A network actor that died is
            # restarted for the next files, but the file it died on is not tried again there.
            warnings.simplefilter("ignore", DeprecationWarning)
            results = (ray.data.from_items(files, override_num_blocks=len(files))
                       .map(_decode, fn_kwargs={"window": model.window, "measure": musical.enabled()}, num_cpus=1,
                            ray_remote_args_fn=lambda: {"max_retries": RETRIES})
                       .map_batches(_Network, fn_constructor_kwargs={"model_name": model_name, "threads": threads,
                                                                     "device": device},
                                    batch_size=1, num_cpus=threads, num_gpus=gpus, max_restarts=-1, max_task_retries=0,
                                    # one file at a time: a dying actor takes only its own file with it
                                    compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1)))
        states = {f.path: f for f in todo}
        for row in results.iter_rows():
            f = states.pop(row["path"])
            yield store(f, pickle.loads(row["record"]) if row["record"] else None, row["reason"] or None)
        for f in states.values():
            yield store(f, None, CRASHED)


def _gpus_per_actor(device: str, workers: int, cluster_gpus: float, address: str) -> float:
    """The GPU share each of ``workers`` network actors asks Ray for: 0 on the CPU, else
    the cluster's ``cluster_gpus`` shared out (ParameterError when it has none)."""
    if device == "cpu":
        return 0
    if not device.startswith("cuda"):
        raise ParameterError(f"--ray runs the network on cpu or cuda, not {device!r}")
    if ":" in device:
        raise ParameterError(f"--ray --device {device}: Ray gives each actor its GPU; say --device cuda")
    if cluster_gpus <= 0:
        raise ParameterError(f"--device {device}: the Ray cluster at {address} has no GPU")
    return min(1.0, cluster_gpus / workers)


@contextlib.contextmanager
def _connected(address: str, actor_cpus: int):
    """Connected to the Ray cluster at ``address`` (see the module), disconnected after,
    unless this process was already connected (then that connection is used). A local
    cluster offers the network actors their ``actor_cpus`` (at least the cores)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == LOCAL:  # read by Ray as it is imported and by the processes it starts: loopback only
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        import ray
    except ImportError:
        raise ParameterError("--ray needs Ray: pip install 'soundalike[cluster]'") from None
    if ray.is_initialized():
        yield
        return
    logging.getLogger("ray").setLevel(logging.WARNING)
    if address == LOCAL:
        # one logical CPU more: a decoding task always finds a slot beside a full set of network
        # actors (decoding is a fifth of the work or less)
        ray.init(num_cpus=max(os.cpu_count() or 1, actor_cpus) + 1, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, logging_level=logging.ERROR)
    else:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ParameterError(f"cannot reach the Ray cluster at {address} ({exc})") from None
    try:
        yield
    finally:
        ray.shutdown()


def _decode(row: dict, *, window, measure: bool) -> dict:
    """A Ray task: one file's tags, windows and musical measures, pickled into ``record``'s
    place for the network stage (``reason`` when it failed)."""
    done = {"path": row["path"], "size": row["size"], "mtime_ns": row["mtime_ns"], "record": b"", "reason": ""}
    try:
        meta = audio.read_metadata(row["path"])
        cut = analysis.cut_track(row["path"], window, excerpt=row["excerpt"], duration=meta.duration,
                                 keep_audio=measure)
        measures = musical.measure(list(cut.clips), window.sample_rate, meta.channels) if measure else None
        cut = dataclasses.replace(cut, clips=())  # measured: the network needs only the windows
        done["record"] = pickle.dumps((meta, cut, measures), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # a bad file must not stop the run: record why instead
        done["reason"] = failure_reason(exc)
    return done


class _Network:
    """A Ray actor: the model, loaded once, turning decoded files into catalogue records."""

    def __init__(self, model_name: str, threads: int, device: str):
        import torch

        torch.set_num_threads(threads)
        self.model = load_model(model_name, device)

    def __call__(self, batch: dict) -> dict:
        records, reasons = [], []
        for path, size, mtime_ns, decoded, reason in zip(batch["path"], batch["size"], batch["mtime_ns"],
                                                         batch["record"], batch["reason"]):
            record = b""
            if not reason:
                try:
                    meta, cut, measures = pickle.loads(decoded)
                    result = analysis.analyse_cut(cut, self.model)
                    f = FileState(str(path), int(size), int(mtime_ns))
                    record = pickle.dumps(track_record(f, meta, result, measures), protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as exc:  # as in local indexing: the file fails, the run goes on
                    reason = failure_reason(exc)
            records.append(record)
            reasons.append(reason)
        return {"path": batch["path"], "record": records, "reason": reasons}
