"""The page's map and the API at library scale: a synthetic library of N tracks.

    python bench/bench_server.py [--tracks 50000] [--runs 5]

Builds a library of N tracks with clustered 200-d vectors and 50 tag probabilities
(no audio: the map and search never touch the files), then times, over ``--runs``:
``GET /api/map`` (first call computes the projection; later calls are cached per
library generation), a tag search and a similar query through the API, and the
browser drawing the map in headless Chromium (when /usr/bin/chromium exists).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
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
        if Path("/usr/bin/chromium").exists():
            browser_draw(app, args.runs)
    return 0


def browser_draw(app, runs: int) -> None:
    import socket

    import uvicorn
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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
