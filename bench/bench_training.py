"""Every model family trained on the soundtracks corpus (label = soundtrack, split by track).

    python bench/bench_training.py CORPUS_DIR OUT_DIR [--only NAME,...]

CORPUS_DIR is what ``../shared/data/fetch-soundtracks`` made (one folder per game).
Each run is ``soundalike train`` with the options below, on CPU; the wall time of each
run and its test figures are printed as one markdown table (OUT_DIR/summary.md).
Track2Vec needs playlists, which the corpus lacks: OUT_DIR/playlists.txt is made of
"album" playlists (8 tracks drawn from one soundtrack, 20 per soundtrack, seeded).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RUNS = {
    "mfcc-probe": ["--model", "probe", "--embedder", "descriptors", "--epochs", "60", "--patience", "15"],
    "msd-probe": ["--model", "probe", "--embedder", "msd-musicnn", "--epochs", "60", "--patience", "15"],
    "raw-cnn": ["--model", "raw-cnn", "--epochs", "30", "--patience", "8"],
    "spec-cnn": ["--model", "spec-cnn", "--epochs", "15", "--patience", "5"],
    "short-chunk-resnet": ["--model", "short-chunk-resnet", "--param", "channels=32", "--epochs", "15",
                           "--patience", "5"],
    "musicnn": ["--model", "musicnn", "--epochs", "8", "--crops-per-track", "2", "--patience", "4"],
    "musicnn-msd-init": ["--model", "musicnn", "--init", "msd-musicnn", "--epochs", "5", "--crops-per-track", "2",
                         "--patience", "3", "--lr", "3e-4"],
    "track2vec": ["--model", "track2vec", "--epochs", "15", "--patience", "5"],
}


def album_playlists(corpus: Path, out: Path, *, per_label: int = 20, length: int = 8, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lines = []
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(str(f) for f in folder.rglob("*") if f.suffix.lower() in (".ogg", ".mp3", ".flac", ".wav"))
        for _ in range(per_label):
            lines.append("\t".join(rng.choice(files, size=min(length, len(files)), replace=False)))
    out.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--only", help="comma-separated run names")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    playlists = args.out / "playlists.txt"
    album_playlists(args.corpus.resolve(), playlists)
    rows = []
    for name, options in RUNS.items():
        if args.only and name not in args.only.split(","):
            continue
        data = f"playlists:{playlists}" if name == "track2vec" else f"folders:{args.corpus}"
        command = [sys.executable, "-m", "soundalike.cli", "train", "--data", data, *options,
                   "--out", str(args.out / name), "--device", "cpu", "--cache", str(args.out / "cache")]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        minutes = (time.perf_counter() - started) / 60
        result = json.loads((args.out / name / "report.json").read_text())
        rows.append((name, minutes, result))
        print(f"{name}: {minutes:.1f} min, test {result['test']['score']:.3f}, "
              f"random weights {result['random_weights']['score']:.3f}", flush=True)
    lines = ["| run | minutes | epochs | test score | random weights | per-class accuracy |", "|---|---|---|---|---|---|"]
    for name, minutes, r in rows:
        per_class = ", ".join(f"{k} {v:.2f}" for k, v in r["test"].get("per_class_accuracy", {}).items())
        extra = f"no-audio baseline {r['no_audio_baseline']['score']:.3f}" if "no_audio_baseline" in r else per_class
        lines.append(f"| {name} | {minutes:.1f} | {r['epochs']} | {r['test']['score']:.3f} | "
                     f"{r['random_weights']['score']:.3f} | {extra} |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
