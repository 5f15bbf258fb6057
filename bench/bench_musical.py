"""Tempo, key and loudness: accuracy on synthesized songs, cost per track, indexing speed.

    python bench/bench_musical.py accuracy [--songs 60]
    python bench/bench_musical.py cost [--folder /work/shared/data/gtzan-dev]
    python bench/bench_musical.py index [--folder ...] [--runs 3] [--workers 2] [--previous REF]
    python bench/bench_musical.py agreement FOLDER [--tracks 60]
    python bench/bench_musical.py energy [--genres /work/shared/data/gtzan-dev] [--unlabelled /work/data/soundtracks]
    python bench/bench_musical.py loudness [--folder /work/data/soundtracks] [--tracks 40]

``accuracy``: songs synthesized at a known tempo (70-180 BPM) and key (tests/keyed_songs.py:
drums, chords, bass, melody; and the same without drums), 60 s each, encoded to MP3 at
128 kbps, then decoded as indexing does (10 spread 3 s patches at 16 kHz) and measured.
Tempo is right within 4 % or at half or double; the key exactly, or "close" (its
relative, or a fifth away). The alternatives are measured on the same songs: Krumhansl
and Kessler's key profiles instead of Temperley's, and for tempo one contiguous 20 s
window from the middle with librosa's estimator (and its extra decoding cost).

``cost``: CPU milliseconds per track of :func:`soundalike.musical.measure` on the folder's
files, decoded as indexing does (the gtzan-dev excerpts are 2-3 s: analysed whole), and of
the whole analysis of each file (decoding, network, measures) with and without them.

``index``: ``soundalike index FOLDER --workers W`` into a fresh library, with the measures
switched off ($SOUNDALIKE_MUSICAL=0) and on, and with ``--previous`` soundalike at that git
revision (from a temporary worktree), interleaved, ``--runs`` each; medians.

``agreement``: on real music without tempo labels, how often the excerpt's tempo agrees
(4 %, or half/double) with librosa's on a contiguous 20 s window from the middle.

``energy``: the energy and its parts (loudness, spectral flux, spectral flatness) of every
file, decoded as indexing does: on a folder of GENRE.NNNNN files, the median per genre and
the AUC of metal, rock, hip-hop and disco against classical, jazz, blues and country (the
chance that a loud-genre excerpt gets more energy than a calm-genre one) for the energy and
for each part alone; on a folder without labels, the spread (percentiles).

``loudness``: on tracks of at least 60 s, the stored loudness (the excerpt's mono mix, as
dual mono for a file of 2 channels) and the mono mix as it is, against the BS.1770 loudness
of the same excerpt's stereo audio at the file's own rate (FFmpeg's ebur128; pyloudnorm as a
check), and of its mid and side channels at 16 kHz (what measuring the side as well would give).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soxr

import versions

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import keyed_songs  # noqa: E402
import synth  # noqa: E402
from soundalike import analysis, audio, musical  # noqa: E402
from soundalike.library.indexer import DEFAULT_EXCERPT, analyse_file, find_audio  # noqa: E402
from soundalike.models import DEFAULT_LIBRARY_MODEL, load_model  # noqa: E402

TOLERANCE = 0.04
WINDOW_SECONDS = 20.0
# Krumhansl and Kessler's probe-tone profiles, tonic first: the alternative to Temperley's
KRUMHANSL_KESSLER = musical.key_templates(
    np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]),
    np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]))


def tempo_ok(measured: float | None, true: float) -> bool:
    return measured is not None and any(abs(measured - true * r) <= TOLERANCE * true * r for r in (1, 2, 0.5))


def key_close(measured: tuple, tonic: int, mode: int) -> bool:
    relative = ((tonic + 9) % 12, 0) if mode else ((tonic + 3) % 12, 1)
    return measured in {relative, ((tonic + 7) % 12, mode), ((tonic + 5) % 12, mode)}


def excerpt_clips(path: str, window) -> list[np.ndarray]:
    """The audio indexing gives the measures: the excerpt's patches, or the whole short file."""
    duration = audio.read_metadata(path).duration
    starts = analysis.excerpt_starts(duration, DEFAULT_EXCERPT, window) if duration else None
    if starts is None:
        keeper = musical.ClipKeeper(window.sample_rate)
        for block in audio.stream(path, sr=window.sample_rate):
            keeper.feed(block)
        return keeper.clips()
    return audio.load_excerpts(path, starts=list(starts), duration=window.length / window.sample_rate,
                               sr=window.sample_rate)


def stereo_excerpts(path: str, starts, duration: float) -> tuple[list[np.ndarray], int]:
    """([(2, n) float32 audio of each excerpt at the file's rate], that rate): the channels that
    :func:`excerpt_clips` mixes, cut at the same times (as ``audio``'s decoder, from the first sample)."""
    import av

    excerpts = []
    with av.open(path) as container:
        stream = container.streams.audio[0]
        origin = float((stream.start_time or 0) * stream.time_base)
        resampler = av.AudioResampler(format="fltp", layout="stereo")
        for start in starts:
            container.seek((stream.start_time or 0) + int(start / stream.time_base), stream=stream)
            blocks, rate, position = [], None, None
            for frame in container.decode(stream):
                position = frame.time - origin if frame.time is not None else position or 0.0
                for out in resampler.resample(frame):
                    rate = out.sample_rate
                    block = out.to_ndarray()[:, max(0, round((start - position) * rate)):]
                    position += out.samples / rate
                    blocks.append(block)
                if rate and sum(b.shape[1] for b in blocks) >= duration * rate:
                    break
            excerpts.append(np.concatenate(blocks, axis=1)[:, : round(duration * rate)])
    return excerpts, rate


def contiguous_tempo(path: str, sr: int) -> tuple[float, float]:
    """(librosa's tempo on a 20 s window from the middle, seconds spent decoding and estimating)."""
    import librosa

    t0 = time.perf_counter()
    duration = audio.read_metadata(path).duration or WINDOW_SECONDS
    y = audio.load(path, sr=sr, start=max(0.0, duration / 2 - WINDOW_SECONDS / 2), duration=WINDOW_SECONDS)
    bpm = float(librosa.feature.tempo(y=y, sr=sr)[0])
    return bpm, time.perf_counter() - t0


def accuracy(args) -> None:
    window = load_model(DEFAULT_LIBRARY_MODEL).window
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.songs):
            bpm, tonic, mode = float(rng.uniform(70, 180)), int(rng.integers(12)), int(rng.integers(2))
            drums = i % 3 != 2  # one song in three without drums: the pulse only from chords, bass and melody
            path = Path(folder) / f"song{i}.mp3"
            y = keyed_songs.render(bpm, tonic, mode, seconds=60, seed=i, drums=drums)
            synth.write(path, y[None], keyed_songs.RATE)
            t0 = time.perf_counter()
            clips = excerpt_clips(str(path), window)
            measured = musical.measure(clips, window.sample_rate)
            spent = time.perf_counter() - t0
            other, other_spent = contiguous_tempo(str(path), window.sample_rate)
            kk = musical.estimate_key(sum(musical.chroma(c, window.sample_rate) for c in clips), KRUMHANSL_KESSLER)
            rows.append((drums, tempo_ok(measured.bpm, bpm), (measured.key, measured.mode) == (tonic, mode),
                         key_close((measured.key, measured.mode), tonic, mode), tempo_ok(other, bpm),
                         spent, other_spent, measured.bpm_confidence, kk[:2] == (tonic, mode)))
    for label, keep in (("all", lambda r: True), ("with drums", lambda r: r[0]), ("no drums", lambda r: not r[0])):
        chosen = [r for r in rows if keep(r)]
        n = len(chosen)
        print(f"{label:10s} n={n:3d}  tempo {sum(r[1] for r in chosen) / n:6.1%}  key exact "
              f"{sum(r[2] for r in chosen) / n:6.1%}  close {sum(r[3] for r in chosen) / n:6.1%}  "
              f"(Krumhansl-Kessler: key exact {sum(r[8] for r in chosen) / n:6.1%}; 20 s window, librosa: tempo "
              f"{sum(r[4] for r in chosen) / n:6.1%})")
    print(f"per song: decode 10 patches + measure {1000 * statistics.median(r[5] for r in rows):.0f} ms; "
          f"20 s window decode + librosa tempo {1000 * statistics.median(r[6] for r in rows):.0f} ms (median); "
          f"median tempo confidence {statistics.median(r[7] for r in rows):.2f}")


def cost(args) -> None:
    """CPU time per track of the measures alone, and of analysing each file as indexing does
    with and without them (one torch thread, as each of 2 workers on 2 cores; each file
    both ways, in alternating order)."""
    import torch

    torch.set_num_threads(1)
    model = load_model(DEFAULT_LIBRARY_MODEL)
    files = [f for f in find_audio([args.folder])][: args.limit]
    clips = [excerpt_clips(f.path, model.window) for f in files]
    for f, c in zip(files[:5], clips):  # warm up (filter banks, FFT plans, the network)
        musical.measure(c, model.window.sample_rate)
        analyse_file(f, model, DEFAULT_EXCERPT)
    alone, whole = [], {"0": [], "1": []}
    for i, (f, c) in enumerate(zip(files, clips)):
        t0 = time.process_time()
        musical.measure(c, model.window.sample_rate)
        alone.append(time.process_time() - t0)
        for switch in ("0", "1") if i % 2 == 0 else ("1", "0"):
            os.environ[musical.ENABLED_VARIABLE] = switch
            t0 = time.process_time()
            analyse_file(f, model, DEFAULT_EXCERPT)
            whole[switch].append(time.process_time() - t0)
    seconds = statistics.mean(sum(len(x) for x in c) / model.window.sample_rate for c in clips)
    off, on = sum(whole["0"]), sum(whole["1"])
    print(f"{len(files)} files of {args.folder} ({seconds:.1f} s measured each on average), CPU ms per track: "
          f"measures alone median {1000 * statistics.median(alone):.1f} (mean {1000 * statistics.mean(alone):.1f}); "
          f"analyse_file without {1000 * statistics.median(whole['0']):.0f}, with "
          f"{1000 * statistics.median(whole['1']):.0f} (median); in all {100 * (on / off - 1):+.1f} %")


def index(args) -> None:
    with contextlib.ExitStack() as stack:
        previous = stack.enter_context(versions.worktree(args.previous)) if args.previous else None
        runs = {"off": versions.environment(None, **{musical.ENABLED_VARIABLE: "0"}),
                "on": versions.environment(None, **{musical.ENABLED_VARIABLE: "1"})}
        if previous:
            runs[f"soundalike {args.previous}"] = versions.environment(previous)
        times = {mode: [] for mode in runs}
        for run in range(args.runs):
            order = list(runs) if run % 2 == 0 else list(reversed(runs))  # interleaved: the machine is shared
            for mode in order:
                with tempfile.TemporaryDirectory() as folder:
                    t0 = time.perf_counter()
                    subprocess.run(versions.command("index", str(args.folder), "--library", f"{folder}/lib.sqlite",
                                                    "--workers", str(args.workers)),
                                   env=runs[mode], check=True, capture_output=True)
                    times[mode].append(time.perf_counter() - t0)
                    print(f"run {run + 1} {mode}: {times[mode][-1]:.1f} s", flush=True)
    medians = {mode: statistics.median(t) for mode, t in times.items()}
    for mode, median in medians.items():
        print(f"median {mode}: {median:.1f} s ({100 * (medians['on'] / median - 1):+.1f} % with measures)")


def agreement(args) -> None:
    window = load_model(DEFAULT_LIBRARY_MODEL).window
    files = [f.path for f in find_audio([args.folder])]
    rng = np.random.default_rng(args.seed)
    agree, done = 0, 0
    for i in rng.permutation(len(files)):
        duration = audio.read_metadata(files[i]).duration or 0
        if duration < 60:
            continue
        measured = musical.measure(excerpt_clips(files[i], window), window.sample_rate)
        other, _ = contiguous_tempo(files[i], window.sample_rate)
        agree += tempo_ok(measured.bpm, other)
        done += 1
        if done == args.tracks:
            break
    print(f"{done} tracks of at least 60 s from {args.folder}: the excerpt's tempo agrees with librosa's on a "
          f"20 s window in {agree / done:.1%}")


LOUD_GENRES, CALM_GENRES = ("metal", "rock", "hiphop", "disco"), ("classical", "jazz", "blues", "country")


def energy_parts(path: str, window) -> dict:
    """The energy of a file as indexing measures it, and its parts."""
    clips = [c for c in excerpt_clips(path, window) if len(c) >= musical.CHROMA_FFT]
    sr, channels = window.sample_rate, audio.read_metadata(path).channels or 1
    mels = [musical.mel_power(c, sr) for c in clips]
    flux = float(np.concatenate([musical.spectral_flux(m) for m in mels]).mean())
    flatness = musical.flatness(np.concatenate(mels, axis=1))
    loudness = musical.integrated_loudness(np.concatenate(clips), sr, dual_mono=channels >= 2)
    return {"energy": musical.energy(loudness, flux, flatness), "loudness": loudness, "flux": flux,
            "flatness": flatness}


def auc(positives: list[float], negatives: list[float]) -> float:
    """The chance that a positive scores above a negative (ties count half)."""
    p, n = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


def energy_report(args) -> None:
    window = load_model(DEFAULT_LIBRARY_MODEL).window
    parts = ("energy", "loudness", "flux", "flatness")
    measured = {f.path: energy_parts(f.path, window) for f in find_audio([args.genres])}
    measured = {p: m for p, m in measured.items() if m["energy"] is not None}
    genres = sorted({Path(p).name.split(".")[0] for p in measured})
    by_genre = {g: [m for p, m in measured.items() if Path(p).name.split(".")[0] == g] for g in genres}
    print(f"{args.genres}: {len(measured)} files; medians per genre")
    print(f"{'genre':10s}" + "".join(f"{x:>10s}" for x in parts))
    for g in sorted(genres, key=lambda g: statistics.median(m["energy"] for m in by_genre[g])):
        print(f"{g:10s}" + "".join(f"{statistics.median(m[x] for m in by_genre[g]):10.3f}" for x in parts))
    print(f"AUC {'+'.join(LOUD_GENRES)} vs {'+'.join(CALM_GENRES)}: " + ", ".join(
        f"{x} {auc([m[x] for g in LOUD_GENRES for m in by_genre[g]], [m[x] for g in CALM_GENRES for m in by_genre[g]]):.3f}"
        for x in parts))
    values = {x: [m[x] for m in measured.values()] for x in parts}
    print(f"energy over all {len(measured)}: 5th-95th percentile {np.percentile(values['energy'], 5):.2f}-"
          f"{np.percentile(values['energy'], 95):.2f}, min {min(values['energy']):.2f}, max {max(values['energy']):.2f}")
    t0 = time.process_time()
    unlabelled = {f.path: energy_parts(f.path, window) for f in find_audio([args.unlabelled])}
    spent = time.process_time() - t0
    unlabelled = {p: m for p, m in unlabelled.items() if m["energy"] is not None}
    print(f"{args.unlabelled}: {len(unlabelled)} files ({1000 * spent / max(1, len(unlabelled)):.0f} CPU ms each "
          "to decode and measure); percentiles 5 / 25 / 50 / 75 / 95")
    for x in parts:
        print(f"  {x:9s} " + " / ".join(f"{v:.3f}" for v in np.percentile([m[x] for m in unlabelled.values()],
                                                                         [5, 25, 50, 75, 95])))
    ranked = sorted(unlabelled, key=lambda p: unlabelled[p]["energy"])
    for label, chosen in (("calmest", ranked[:5]), ("most energetic", ranked[-5:])):
        print(f"  {label}: " + ", ".join(f"{Path(p).parent.name}/{Path(p).name} {unlabelled[p]['energy']:.2f}"
                                         for p in chosen))


def loudness_report(args) -> None:
    import av
    import pyloudnorm

    window = load_model(DEFAULT_LIBRARY_MODEL).window
    sr, seconds = window.sample_rate, window.length / window.sample_rate
    rows, skipped = [], []
    for f in find_audio([args.folder]):
        meta = audio.read_metadata(f.path)
        starts = analysis.excerpt_starts(meta.duration or 0, DEFAULT_EXCERPT, window)
        if starts is None or (meta.duration or 0) < 60 or meta.channels != 2:
            continue
        mono = np.concatenate(excerpt_clips(f.path, window))
        try:
            stereo, rate = stereo_excerpts(f.path, starts, seconds)
        except av.error.FFmpegError:  # one libsndfile decodes for soundalike
            skipped.append(f.path)
            continue
        stereo = np.concatenate(stereo, axis=1)
        mid_side = soxr.resample(np.stack([stereo[0] + stereo[1], stereo[0] - stereo[1]]).T / 2, rate, sr).T
        true = musical.integrated_loudness(stereo, rate)
        rows.append({"path": f.path, "true": true,
                     "pyloudnorm": pyloudnorm.Meter(rate).integrated_loudness(stereo.T.astype(np.float64)),
                     "mono mix": musical.integrated_loudness(mono, sr),
                     "stored": musical.measure(excerpt_clips(f.path, window), sr, meta.channels).loudness,
                     "mid+side": musical.integrated_loudness(mid_side, sr, dual_mono=False) + 10 * np.log10(2)})
        if len(rows) == args.tracks:
            break
    print(f"{len(rows)} stereo tracks of at least 60 s from {args.folder}: loudness of the excerpt minus BS.1770's "
          f"of its stereo audio (FFmpeg ebur128 at the file's rate), dB; {len(skipped)} FFmpeg cannot open left out")
    for x in ("mono mix", "stored", "mid+side", "pyloudnorm"):
        errors = np.array([r[x] - r["true"] for r in rows])
        print(f"  {x:10s} median {np.median(errors):+.2f}  5th {np.percentile(errors, 5):+.2f}  95th "
              f"{np.percentile(errors, 95):+.2f}  min {errors.min():+.2f}  max {errors.max():+.2f}  "
              f"|error| <= 1 dB: {np.mean(np.abs(errors) <= 1):.0%}")
    print(f"  the {args.show} with the largest error stored:")
    for r in sorted(rows, key=lambda r: r["stored"] - r["true"])[: args.show]:
        print(f"  {Path(r['path']).parent.name}/{Path(r['path']).name}: true {r['true']:.1f}, mono mix "
              f"{r['mono mix']:.1f}, stored {r['stored']:.1f}, mid+side {r['mid+side']:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("accuracy")
    p.add_argument("--songs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=accuracy)
    p = sub.add_parser("cost")
    p.add_argument("--folder", default="/work/shared/data/gtzan-dev")
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=cost)
    p = sub.add_parser("index")
    p.add_argument("--folder", default="/work/shared/data/gtzan-dev")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--previous", metavar="REF", help="also time soundalike at this git revision")
    p.set_defaults(func=index)
    p = sub.add_parser("agreement")
    p.add_argument("folder")
    p.add_argument("--tracks", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=agreement)
    p = sub.add_parser("energy")
    p.add_argument("--genres", default="/work/shared/data/gtzan-dev", help="files named GENRE.NNNNN")
    p.add_argument("--unlabelled", default="/work/data/soundtracks")
    p.set_defaults(func=energy_report)
    p = sub.add_parser("loudness")
    p.add_argument("--folder", default="/work/data/soundtracks")
    p.add_argument("--tracks", type=int, default=None, help="at most this many (default: all)")
    p.add_argument("--show", type=int, default=5, help="tracks to list")
    p.set_defaults(func=loudness_report)
    args = parser.parse_args()
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
