"""Speed of the analysis path on a 4-minute MP3: decode, front end, network, whole.

Each measurement runs in a fresh subprocess (so peak memory is its own), repeated
``--runs`` times; the table gives medians. Real-time factor (RTF) = seconds of audio
per second of computing. Usage::

    python bench/bench_analysis.py [--file SONG.mp3] [--runs 5] [--threads 1,2]

Without ``--file`` a 4-minute stereo 44.1 kHz MP3 is synthesized (chords, clicks and
noise). Also compares, in the same run, the front-end blocks' eval shortcut with
its max taken on an NCHW tensor instead of in oneDNN's layout ("network-nchw"), the
plain order (conv, ReLU, batch norm, then max: "network-plain"), and batch sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["decode", "frontend", "network", "network-nchw", "network-plain", "whole"]
NETWORK_STAGES = ("network", "network-nchw", "network-plain")


def make_song(path: Path, seconds: float = 240.0) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    import numpy as np
    import synth

    rate = 44_100
    pieces = [synth.chord(30.0, rate, seed=i) for i in range(int(seconds // 30))]
    signal = np.concatenate(pieces, axis=1)
    return synth.write(path, np.tile(signal, (2, 1)), rate)


def worker(stage: str, threads: int, path: str, batch: int) -> dict:
    """Time one stage once; returns seconds, audio seconds and peak RSS (MiB)."""
    import numpy as np
    import torch

    if threads == 1:  # "one core" means one: pin the whole process, decoder included
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(threads)
    from soundalike import analysis, audio
    from soundalike.models import load_model

    model = load_model()
    y = windows = None
    if stage in ("frontend", *NETWORK_STAGES):
        y = audio.load(path)
        windows = torch.from_numpy(np.stack(list(analysis.iter_windows([y], model.window))))

    def run_network(fn):
        with torch.inference_mode():
            for i in range(0, len(windows), batch):
                fn(windows[i : i + batch])

    if stage == "network-plain":  # the blocks' plain order, for comparison
        for block in [*model.frontend.timbral, *model.frontend.temporal]:
            block.max_over_frequency = lambda x, b=block: b(x).amax(dim=3)
    if stage == "network-nchw":  # the shortcut, reduced on a plain NCHW tensor
        from soundalike.models import musicnn

        musicnn._conv_max_over_frequency = lambda x, w, b: torch.nn.functional.conv2d(x, w, b).amax(dim=3)
    with torch.inference_mode():
        model.features(torch.zeros(batch, model.window.length))  # warm-up
    t0 = time.perf_counter()
    if stage == "decode":
        y = audio.load(path)
    elif stage == "frontend":
        run_network(model.logmel)
    elif stage in NETWORK_STAGES:
        with torch.inference_mode():
            logmel = [model.logmel(windows[i : i + batch]) for i in range(0, len(windows), batch)]
        t0 = time.perf_counter()
        with torch.inference_mode():
            for lm in logmel:
                model.features_from_logmel(lm)
    elif stage == "whole":
        analysis.analyze(path, model, batch_size=batch)
    seconds = time.perf_counter() - t0
    duration = len(y) / model.window.sample_rate if y is not None else audio.read_metadata(path).duration
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "audio": duration, "peak_mib": peak}


def measure(stage: str, threads: int, path: Path, runs: int, batch: int) -> dict:
    results = []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    for _ in range(runs):
        out = subprocess.run([sys.executable, __file__, "--worker", stage, str(threads), str(path), str(batch)],
                             capture_output=True, text=True, env=env, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    seconds = statistics.median(r["seconds"] for r in results)
    audio = results[0]["audio"]
    return {"stage": stage, "threads": threads, "batch": batch, "seconds": seconds, "rtf": audio / seconds,
            "patches_per_s": (audio / 2.992) / seconds, "peak_mib": max(r["peak_mib"] for r in results)}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        stage, threads, path, batch = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        print(json.dumps(worker(stage, threads, path, batch)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}")
    parser.add_argument("--batches", default="1,2,4,16", help="batch sizes compared for the network")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or make_song(Path(tmp) / "song.mp3")
        rows = []
        for threads in [int(t) for t in args.threads.split(",")]:
            for stage in STAGES:
                rows.append(measure(stage, threads, path, args.runs, 2))
                print(json.dumps(rows[-1]), file=sys.stderr)
            for batch in [int(b) for b in args.batches.split(",") if int(b) != 2]:
                rows.append(measure("network", threads, path, args.runs, batch))
                print(json.dumps(rows[-1]), file=sys.stderr)
    print("| stage | threads | batch | median s | RTF | patches/s | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['threads']} | {r['batch']} | {r['seconds']:.2f} | {r['rtf']:.0f}x "
              f"| {r['patches_per_s']:.1f} | {r['peak_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
