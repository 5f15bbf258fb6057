"""How fast each command answers, start-up included: the real command line, run as a
new process each time, on a small library this script builds.

    python bench/bench_startup.py [--runs 7] [--music DIR] [--compare REF]

Commands: ``--help``, ``stats``, ``search --tag rock``, ``tags ID``, ``similar ID`` (a
library track: stored vectors only), ``similar FILE`` (a file outside the library:
analysed on the fly) and ``analyze FILE``. The library is indexed from ``--music``, or
from a few synthesized tracks (chords, tones and noise, 20 s each, as WAV).

With ``--compare REF`` (a commit, e.g. 081a053), the same commands also run from that
commit's source (exported with ``git archive``: the repository is not touched), in the
same Python environment, on the same library; the two alternate run by run, so that a
noisy machine slows both alike. Prints the median and the fastest wall time of each.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = 22_050
# runs soundalike's command line from whatever source directory PYTHONPATH names
LAUNCH = "import sys; from soundalike.cli import main; sys.exit(main(sys.argv[1:]))"


def write_wav(path: Path, signal: np.ndarray) -> None:
    """A mono float signal in [-1, 1] as 16-bit WAV at RATE."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes())


def synthesize(folder: Path, n: int, seconds: float = 20.0) -> list[Path]:
    """``n`` distinct tracks: chords on different roots, pure tones and noise bursts."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        root = 110.0 * 2 ** (i / 5)
        if i % 3 == 0:
            y = sum(np.sin(2 * np.pi * root * r * t) for r in (1.0, 1.26, 1.5)) / 3
        elif i % 3 == 1:
            y = np.sin(2 * np.pi * root * t)
        else:
            y = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * (i / 4) * t) > 0)
        paths.append(folder / f"track{i:02d}.wav")
        write_wav(paths[-1], 0.3 * y)
    return paths


def commands(library: Path, outside: Path) -> dict[str, list[str]]:
    lib = ["--library", str(library)]
    return {
        "--help": ["--help"],
        "stats": ["stats", *lib],
        "search --tag rock": ["search", "--tag", "rock", *lib],
        "tags ID": ["tags", "1", *lib],
        "similar ID (library track)": ["similar", "1", *lib],
        "similar FILE (outside file)": ["similar", str(outside), *lib],
        "analyze FILE": ["analyze", str(outside)],
    }


def run_once(source: Path, args: list[str]) -> float:
    """Wall seconds of one run of the command line from ``source`` (a tree with src/)."""
    env = {**os.environ, "PYTHONPATH": str(source / "src")}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LAUNCH, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"soundalike {' '.join(args)} from {source} failed:\n{proc.stderr}")
    return seconds


def export(commit: str, into: Path) -> Path:
    """The tree of ``commit`` in a new folder (git archive: the repository is not changed)."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command and source (default 7)")
    parser.add_argument("--music", type=Path, help="index this folder instead of synthesized tracks")
    parser.add_argument("--compare", metavar="REF", help="also time the command line of this commit")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        tmp = Path(tmp)
        music = args.music or tmp / "music"
        outside = synthesize(tmp / "outside", 1)[0]
        if not args.music:
            synthesize(music, 12)
        library = tmp / "library.sqlite"
        print(f"indexing {music} into {library} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-c", LAUNCH, "index", str(music), "--library", str(library)],
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=True, capture_output=True)
        sources = {"working tree": ROOT}
        if args.compare:
            sources[args.compare] = export(args.compare, tmp / "ref")
        table = commands(library, outside)
        times: dict[tuple[str, str], list[float]] = {(c, s): [] for c in table for s in sources}
        for name, argv in table.items():  # one untimed run each: files in the page cache, bytecode compiled
            for source in sources.values():
                run_once(source, argv)
        for run in range(args.runs):
            order = list(sources.items()) if run % 2 == 0 else list(reversed(sources.items()))
            for name, argv in table.items():
                for label, source in order:
                    times[name, label].append(run_once(source, argv))
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

    print(f"# soundalike start-up: wall seconds per command, {args.runs} runs each (median / min)\n")
    print(f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}; "
          f"Python {platform.python_version()}")
    print(f"- library: {'the synthesized 12 tracks' if not args.music else args.music}; "
          f"command: python bench/bench_startup.py --runs {args.runs}"
          + (f" --compare {args.compare}" if args.compare else "") + "\n")
    head = ["command", *(f"{label} median / min" for label in sources)]
    if args.compare:
        head.append("speed-up (median)")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name in table:
        cells = [name]
        for label in sources:
            runs = times[name, label]
            cells.append(f"{statistics.median(runs):.2f} / {min(runs):.2f}")
        if args.compare:
            now, before = (statistics.median(times[name, label]) for label in sources)
            cells.append(f"{before / now:.1f}x")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
