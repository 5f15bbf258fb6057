"""The page's map and the API at library scale: a synthetic library of N tracks.

    python bench/bench_server.py [--tracks 50000] [--runs 5] [--clients 8] [--seconds 10]
                                 [--before SRC] [--no-browser]

Builds a library of N tracks with clustered 200-d vectors and 50 tag probabilities
(no audio: the map and search never touch the files), then times, over ``--runs``:
``GET /api/map`` (first call computes the projection; later calls are cached per
library generation), a tag search and a similar query through the API, and the
browser drawing the map in headless Chromium (when /usr/bin/chromium exists).

Throughput: ``soundalike serve``'s app in a process of its own (uvicorn, loopback),
``--clients`` threads asking ``GET /api/tracks/{random id}/similar`` for ``--seconds``,
alone and then while a 2-minute upload is analysed again and again (requests per
second, 95th percentile latency, uploads answered). With ``--before SRC`` (the ``src``
folder of another version, e.g. ``git archive HEAD src | tar -x -C /tmp/before``) the
same is measured on that version, alternating with this one, run by run.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from soundalike.audio import TrackMetadata
from soundalike.library.catalogue import Catalogue, ModelDescription, TrackRecord
from soundalike.models.musicnn import MTT_LABELS
from soundalike.server import create_app


def build(path: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, 200)).astype(np.float32)
    with Catalogue(path) as catalogue:
        catalogue.db.execute("PRAGMA synchronous=OFF")  # a throwaway library
        catalogue.bind_model(ModelDescription("mtt-musicnn", MTT_LABELS, (200,), (1.0,)))
        for i in range(n):
            c = i % 50
            vector = centres[c] + 0.5 * rng.standard_normal(200).astype(np.float32)
            tags = rng.dirichlet(np.ones(50)).astype(np.float32)
            tags[c] += 0.5
            meta = TrackMetadata(f"Artist {i % 997}", f"Song {i}", f"Album {i % 3001}", None, 200.0)
            catalogue.put(TrackRecord(f"/music/{i}.mp3", 1, 1, meta, 10, vector, tags,
                                      vector[None].astype(np.float16), np.zeros(1, np.float32)))


def timed(fn, runs: int) -> tuple[float, float]:
    first = time.perf_counter()
    fn()
    first = time.perf_counter() - first
    later = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        later.append(time.perf_counter() - t)
    return first, statistics.median(later)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--before", type=Path, help="src folder of the version to compare with")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        library = Path(folder) / "big.sqlite"
        t = time.perf_counter()
        build(library, args.tracks)
        print(f"built {args.tracks} tracks in {time.perf_counter() - t:.1f} s")
        app = create_app(library)
        with TestClient(app) as client:
            size = len(client.get("/api/map").content)
            app.state.library.catalogue.set_meta("generation", "-1")  # the first timed call recomputes
            first, later = timed(lambda: client.get("/api/map").raise_for_status(), args.runs)
            print(f"GET /api/map: first {first * 1000:.0f} ms, cached median {later * 1000:.1f} ms, {size / 1e6:.1f} MB")
            _, tag = timed(lambda: client.get("/api/tracks", params={"tag": "piano"}).raise_for_status(), args.runs)
            _, sim = timed(lambda: client.get("/api/tracks/123/similar").raise_for_status(), args.runs)
            print(f"GET /api/tracks?tag=piano median {tag * 1000:.1f} ms; GET /api/tracks/123/similar median "
                  f"{sim * 1000:.1f} ms")
        if Path("/usr/bin/chromium").exists() and not args.no_browser:
            browser_draw(app, args.runs)
        versions = {"this": Path(__file__).resolve().parents[1] / "src"}
        if args.before:
            versions = {"before": args.before.resolve(), **versions}
        throughput(library, versions, args.runs, args.clients, args.seconds)
    return 0


def throughput(library: Path, versions: dict[str, Path], runs: int, clients: int, seconds: float) -> None:
    """Similar-track requests per second, alone and beside uploads, per version (medians of ``runs``)."""
    song = _song(120.0)
    results = {name: {"alone": [], "upload": []} for name in versions}
    for run in range(runs):
        for name, src in versions.items():
            copy = library.with_name(f"{name}.sqlite")
            for file in library.parent.glob(library.name + "*"):  # each version its own copy of the files
                shutil.copy(file, copy.with_name(file.name.replace(library.name, copy.name)))
            with _server(copy, src) as port:
                _load(port, clients, 2.0, None)  # warm-up: index, model, connections
                results[name]["alone"].append(_load(port, clients, seconds, None))
                results[name]["upload"].append(_load(port, clients, seconds, song))
            print(f"run {run + 1} {name}: " + "; ".join(
                f"{phase} {r['rps']:.0f}/s p95 {r['p95'] * 1000:.0f} ms, {r['uploads']} uploads"
                for phase, r in ((p, results[name][p][-1]) for p in ("alone", "upload"))), flush=True)
    for name, phases in results.items():
        for phase, rows in phases.items():
            print(f"{name}, {phase}: {statistics.median(r['rps'] for r in rows):.0f} similar/s, "
                  f"p95 {statistics.median(r['p95'] for r in rows) * 1000:.0f} ms, "
                  f"uploads answered {statistics.median(r['uploads'] for r in rows):.0f} "
                  f"(median of {len(rows)} runs of {seconds:.0f} s, {clients} clients)")


def _song(seconds: float, rate: int = 16_000) -> bytes:
    """A WAV of a slow chord with noise, ``seconds`` long."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 4 + 0.05 * rng.standard_normal(len(t))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def free_port() -> int:
    """A loopback port free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upload_form(song: bytes) -> tuple[bytes, dict]:
    """(body, headers) of ``POST /api/upload`` with ``song`` as a WAV file."""
    boundary = "bench-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="song.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n").encode() + song + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class _server:
    """``create_app(library)`` of the soundalike in ``src``, served by uvicorn in a subprocess."""

    def __init__(self, library: Path, src: Path):
        self.library, self.src = library, src

    def __enter__(self) -> int:
        self.port = free_port()
        code = ("import sys, uvicorn; from soundalike.server import create_app; "
                "uvicorn.run(create_app(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]), log_level='warning')")
        env = {**os.environ, "PYTHONPATH": str(self.src)}
        self.process = subprocess.Popen([sys.executable, "-c", code, str(self.library), str(self.port)], env=env)
        deadline = time.monotonic() + 120
        while True:
            try:
                _get(http.client.HTTPConnection("127.0.0.1", self.port, timeout=60), "/api/library")
                return self.port
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(30)


def _get(connection: http.client.HTTPConnection, url: str) -> bytes:
    connection.request("GET", url)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {url}: {response.status} {body[:200]!r}")
    return body


def _load(port: int, clients: int, seconds: float, song: bytes | None) -> dict:
    """``clients`` threads asking for similar tracks for ``seconds`` (and uploads of ``song``
    one after another meanwhile): requests per second, 95th percentile latency, uploads."""
    n = json.loads(_get(http.client.HTTPConnection("127.0.0.1", port), "/api/library"))["tracks"]
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    uploads = []

    def ask(seed: int) -> None:
        rng, connection = random.Random(seed), http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while time.monotonic() < stop:
            t = time.perf_counter()
            _get(connection, f"/api/tracks/{rng.randrange(1, n + 1)}/similar")
            latencies.append(time.perf_counter() - t)

    def upload() -> None:
        body, headers = upload_form(song)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while time.monotonic() < stop:
            connection.request("POST", "/api/upload", body, headers)
            response = connection.getresponse()
            response.read()
            uploads.append(response.status)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(clients)]
    if song is not None:
        threads.append(threading.Thread(target=upload))
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start  # includes requests still running at the stop (a stalled one counts)
    return {"rps": len(latencies) / elapsed, "p95": float(np.percentile(latencies, 95)) if latencies else float("nan"),
            "uploads": sum(status == 200 for status in uploads)}


def browser_draw(app, runs: int) -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        times, hovers = [], []
        for _ in range(runs):
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/#/map")
            t = time.perf_counter()
            page.wait_for_function("document.querySelectorAll('#map-legend li').length > 0", timeout=120_000)
            times.append(time.perf_counter() - t)
            box = page.locator("#map-canvas").bounding_box()
            t = time.perf_counter()
            for i in range(20):
                page.mouse.move(box["x"] + 40 + 40 * i, box["y"] + box["height"] / 2)
            hovers.append((time.perf_counter() - t) / 20)
            page.close()
        browser.close()
    server.should_exit = True
    print(f"browser: map loaded and drawn, median {statistics.median(times) * 1000:.0f} ms; "
          f"hover, median {statistics.median(hovers) * 1000:.1f} ms per move")


if __name__ == "__main__":
    main()
