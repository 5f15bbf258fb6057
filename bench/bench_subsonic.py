"""soundalike against a local Subsonic server (supysonic 0.7.9 on loopback).

    python bench/bench_subsonic.py [--songs 40] [--seconds 30] [--runs 3] [--requests 200] [--workers 2]

Synthesizes ``--songs`` tagged FLAC songs of ``--seconds`` each, serves them with
supysonic (tests/subsonic_server.py), indexes them locally, then measures (medians of
``--runs``):

- ``subsonic link``: songs per second (every song read through search3 pages and matched);
- ``index --subsonic``: songs per second into a fresh library (analysis included,
  ``--workers`` processes; songs read through HTTP ranges);
- ``soundalike serve --subsonic-upstream`` (a process of its own, uvicorn): latency of
  ``getSonicSimilarTracks`` (count 10: one library query and 10 ``getSong`` calls to
  the upstream, plus a ``ping`` when credentials are not remembered) at 1 and 16
  concurrent clients, next to ``ping`` passed through (the proxy's own overhead),
  ``--requests`` requests per client; p50 and p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import songs as collection  # noqa: E402
from subsonic_server import PASSWORD, USER, Supysonic, free_port  # noqa: E402

from soundalike.cli import main  # noqa: E402
from soundalike.subsonic.client import ALLOW_PLAIN_ENV, PASSWORD_ENV  # noqa: E402

AUTH = {"u": USER, "p": PASSWORD, "v": "1.12.0", "c": "bench", "f": "json"}
RECIPES = [("chord", i) for i in range(12)] + [("tone", f) for f in (110, 220, 330, 440, 660, 880, 1320, 1760)] + \
          [("noise", i) for i in range(4)] + [("clicks", 0)]


def make_songs(root: Path, n: int, seconds: float) -> None:
    import numpy as np

    import synth

    for i in range(n):
        recipe = RECIPES[i % len(RECIPES)]
        path = root / f"artist{i % 7}" / f"song{i:03d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        signal = collection.render(recipe, seconds=seconds) * (0.5 + 0.5 * (i % 3) / 2)
        synth.write(path, np.tile(signal, (2, 1)), collection.RATE)
        import mutagen

        tagged = mutagen.File(path, easy=True)
        tagged["artist"], tagged["title"], tagged["album"] = f"Artist {i % 7}", f"Song {i}", f"Album {i % 5}"
        tagged.save()


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - start
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed ({code})")
    return elapsed


def latencies(url: str, endpoint: str, params_of, clients: int, requests: int) -> list[float]:
    """Seconds per request, ``clients`` threads each making ``requests``."""
    out: list[float] = []
    lock = threading.Lock()

    def client():
        mine = []
        with httpx2.Client(timeout=60) as http:
            for _ in range(requests):
                start = time.perf_counter()
                response = http.get(f"{url}/rest/{endpoint}", params=params_of())
                mine.append(time.perf_counter() - start)
                if response.json()["subsonic-response"]["status"] != "ok":
                    raise SystemExit(f"{endpoint}: {response.text[:300]}")
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ[PASSWORD_ENV] = PASSWORD
    os.environ[ALLOW_PLAIN_ENV] = "1"  # supysonic takes no token, on loopback http://
    work = Path(tempfile.mkdtemp(prefix="bench-subsonic-"))
    music = work / "music"
    make_songs(music, args.songs, args.seconds)
    (work / "supysonic").mkdir()
    rows = []
    with Supysonic(music, work / "supysonic") as server:
        library = work / "local.sqlite"
        timed(["index", str(music), "--library", str(library), "--workers", str(args.workers)])
        link = [args.songs / timed(["subsonic", "link", server.url, "--user", USER, "--library", str(library)])
                for _ in range(args.runs)]
        rows.append(("subsonic link", f"{statistics.median(link):.0f} songs/s", ""))
        remote = [args.songs / timed(["index", "--subsonic", server.url, "--user", USER, "--workers",
                                      str(args.workers), "--library", str(work / f"remote{run}.sqlite")])
                  for run in range(args.runs)]
        rows.append((f"index --subsonic ({args.workers} workers)", f"{statistics.median(remote):.1f} songs/s", ""))
        song_ids = [s["id"] for s in httpx2.get(f"{server.url}/rest/search3", params=AUTH | {
            "query": "", "songCount": 1000}).json()["subsonic-response"]["searchResult3"]["song"]]
        port = free_port()
        proxy = subprocess.Popen([sys.executable, "-m", "soundalike.cli", "serve", "--library", str(library),
                                  "--port", str(port), "--subsonic-upstream", server.url],
                                 stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx2.get(f"{url}/rest/ping", params=AUTH, timeout=1)
                    break
                except httpx2.HTTPError:
                    time.sleep(0.1)
            for clients in (1, 16):
                for endpoint, params_of in (("ping", lambda: AUTH),
                                            ("getSonicSimilarTracks",
                                             lambda: AUTH | {"id": random.choice(song_ids), "count": 10})):
                    runs = [latencies(url, endpoint, params_of, clients, max(1, args.requests // clients))
                            for _ in range(args.runs)]
                    p50 = statistics.median(percentile(r, 50) for r in runs) * 1000
                    p99 = statistics.median(percentile(r, 99) for r in runs) * 1000
                    rows.append((f"{endpoint} via proxy, {clients} client{'s' if clients > 1 else ''}",
                                 f"p50 {p50:.1f} ms", f"p99 {p99:.1f} ms"))
            direct = [latencies(server.url, "ping", lambda: AUTH, 1, args.requests) for _ in range(args.runs)]
            rows.append(("ping direct to supysonic, 1 client",
                         f"p50 {statistics.median(percentile(r, 50) for r in direct) * 1000:.1f} ms",
                         f"p99 {statistics.median(percentile(r, 99) for r in direct) * 1000:.1f} ms"))
        finally:
            proxy.terminate()
            proxy.wait()
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.songs} songs of {args.seconds:g} s, {args.runs} runs (medians), {os.cpu_count()} CPUs\n")
    print("| what | figure | |\n|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")


if __name__ == "__main__":
    main_bench()
