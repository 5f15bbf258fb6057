"""A server many use at once: similar-track queries from 1, 8 and 32 clients while an
upload is analysed, for a library in SQLite and in PostgreSQL.

    python bench/bench_serving.py [--tracks 100000] [--like LIBRARY] [--clients 1 8 32]
                                  [--seconds 20] [--runs 3]

The same synthetic tracks (``bench_postgres.load``: 400-d vectors shaped like ``--like``'s,
the default model's tags, 10 patches) go into a SQLite library and a PostgreSQL one (a
private server, as ``bench_postgres.py`` starts). Each is served by ``soundalike serve``
in processes of its own: SQLite by one process (requests in threads, faiss), PostgreSQL
by ``--workers 1`` and ``--workers 2`` (this machine's cores; pgvector). wrk (Debian's
package) asks ``GET /api/tracks/{random id}/similar`` over C connections for
``--seconds`` while one client uploads a 2-minute song again and again (``POST
/api/upload``: decoded and analysed by the default model in the server). Printed per
configuration and client count: similar queries a second, p50 and p99 latency (wrk's),
failed queries, and uploads answered (200) or turned away (503); medians of ``--runs``,
the configurations alternating within each run.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_library import clustered, real_patches  # noqa: E402
from bench_postgres import load, private_server  # noqa: E402
from bench_server import _song, free_port, upload_form  # noqa: E402

WRK_SCRIPT = """
local tracks, threads = 0, 0
function setup(thread) threads = threads + 1; thread:set("number", threads) end
function init(args) tracks = tonumber(args[1]); math.randomseed(tonumber(args[2]) * 100 + number) end
function request() return wrk.format("GET", "/api/tracks/" .. math.random(1, tracks) .. "/similar") end
"""


def build(location: str, vectors: np.ndarray) -> None:
    from soundalike.library import Library

    with Library(location, create=True) as library:
        load(library.catalogue, vectors, 0, np.random.default_rng(2))
        library.refresh_index()


@contextlib.contextmanager
def serving(location: str, workers: int):
    """``soundalike serve`` of ``location`` with ``workers`` processes on a free port: the port."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("soundalike")), "serve", "--library", location, "--port", str(port)]
    process = subprocess.Popen(command + (["--workers", str(workers)] if workers > 1 else []))
    try:
        deadline = time.monotonic() + 600
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server of {location} did not start")
            time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        process.wait(60)


def _answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/api/tracks/1/similar")
        return connection.getresponse().status == 200
    except OSError:
        return False


def wrk(port: int, clients: int, seconds: float, tracks: int, script: Path, seed: int) -> dict:
    """wrk's figures for ``clients`` connections asking for similar tracks: rps, p50/p99 ms, errors."""
    out = subprocess.run(["wrk", "-t", str(min(clients, 2)), "-c", str(clients), "-d", f"{seconds:g}s",
                          "--timeout", "120s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}",
                          "--", str(tracks), str(seed)], capture_output=True, text=True, check=True).stdout
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int(re.search(r"Non-2xx or 3xx responses: (\d+)", out).group(1)) if "Non-2xx" in out else 0
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
            "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
            "errors": errors}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


class Uploads:
    """One client posting ``song`` for analysis again and again until stopped: statuses."""

    def __init__(self, port: int, song: bytes):
        self.body, self.headers = upload_form(song)
        self.port, self.statuses, self.stopped = port, [], threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        while not self.stopped.is_set():
            connection.request("POST", "/api/upload", self.body, self.headers)
            response = connection.getresponse()
            response.read()
            self.statuses.append(response.status)
            if response.status == 503:
                time.sleep(float(response.getheader("Retry-After", "1")))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--like", help="a library whose patches give the vectors their shape")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench_serving.py needs wrk (apt-get install wrk)")
    vectors = clustered(args.tracks, real_patches(args.like) if args.like else None, d=400)
    song = _song(120.0)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soundalike-serving-")))
        script = folder / "similar.lua"
        script.write_text(WRK_SCRIPT)
        url = stack.enter_context(private_server())
        sqlite = str(folder / "bench.sqlite")
        for location in (sqlite, url):
            t = time.perf_counter()
            build(location, vectors)
            print(f"built {args.tracks:,} tracks in {location.split(':')[0]} in {time.perf_counter() - t:.0f} s",
                  file=sys.stderr, flush=True)
        configurations = {"SQLite + faiss, 1 process": (sqlite, 1), "PostgreSQL + pgvector, 1 process": (url, 1),
                          "PostgreSQL + pgvector, 2 processes": (url, 2)}
        rows: dict[tuple[str, int, bool], list[dict]] = {}
        for run in range(args.runs):
            for name, (location, workers) in configurations.items():
                with serving(location, workers) as port:
                    wrk(port, 8, 3, args.tracks, script, 0)  # warm-up: caches, connections
                    for clients in args.clients:
                        for upload in (False, True):
                            with Uploads(port, song) if upload else contextlib.nullcontext() as uploads:
                                row = wrk(port, clients, args.seconds, args.tracks, script, run)
                            if uploads:
                                row["uploads"] = uploads.statuses.count(200)
                                row["busy"] = uploads.statuses.count(503)
                            rows.setdefault((name, clients, upload), []).append(row)
                            print(f"run {run + 1} {name}, {clients} clients{', upload' if upload else ''}: {row}",
                                  file=sys.stderr, flush=True)
    print(f"{args.tracks:,} tracks, 400-d{' shaped like ' + args.like if args.like else ''}; "
          f"{args.seconds:g} s a measurement, medians of {args.runs} runs")
    print("| library | clients | upload analysed | similar/s | p50 ms | p99 ms | failed | uploads 200/503 |\n"
          "|---|---|---|---|---|---|---|---|")
    for (name, clients, upload), runs in rows.items():
        def median(key):
            return statistics.median(r[key] for r in runs)
        uploads = f"{median('uploads'):g}/{median('busy'):g}" if upload else "–"
        print(f"| {name} | {clients} | {'yes' if upload else 'no'} | {median('rps'):.0f} | {median('p50'):.1f} "
              f"| {median('p99'):.1f} | {median('errors'):g} | {uploads} |")


if __name__ == "__main__":
    main()
