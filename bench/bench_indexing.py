"""Where indexing's time goes, stage by stage, and how fast ``soundalike index`` runs.

    python bench/bench_indexing.py stages CORPUS_DIR [--tracks 40] [--model msd-mtt-musicnn]
    python bench/bench_indexing.py speed CORPUS_DIR [--runs 3] [--workers 2] [--model M] [--previous REF]
                                          [--ray-workers 1,2] [--devices cuda]
    python bench/bench_indexing.py layers [--runs 30]

``stages`` runs the default indexing path of ``--tracks`` files of CORPUS_DIR (spread over
it, sorted by path) in this process on one torch thread, timing each stage on its own:
tags (mutagen), open (the container, FFmpeg), seek and decode (the excerpt's 10 spread
patches, at the file's own rate), resample (to 16 kHz, soxr), front end (log-mel), network,
the tempo/key/loudness measures, and the SQLite commit of the track. It prints the
milliseconds per track of each (median and mean) and their share, and, for comparison,
the same files through ``indexer.analyse_file`` in one piece (which must be about the sum).

``speed`` times ``soundalike index CORPUS_DIR --workers W --model M`` into a fresh library, whole
process, ``--runs`` times, interleaved with soundalike at git revision ``--previous`` (from
a temporary worktree), with ``--ray local --workers N`` for each N of ``--ray-workers`` and
with ``--device D`` for each D of ``--devices``, when given; medians, tracks per second.

``layers`` times each layer of MSD-MusiCNN on two patches (the default batch) on one torch
thread, with its arithmetic (multiply-adds x 2) and the rate it reaches, and, for the two
timbral convolutions (most of the work), the same convolution in int8 through PyTorch's
FBGEMM quantized kernels (per-channel 8-bit weights, the input quantized to 7 bits and the
output to 8 by their ranges), with its largest error relative to the float32 output's range.
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

import versions

STAGES = ("tags", "open", "seek and decode", "resample", "front end", "network", "measures", "SQLite commit")


def stages(args) -> None:
    import torch

    from soundalike import analysis, audio, musical
    from soundalike.library.catalogue import Catalogue, ModelDescription, TrackRecord
    from soundalike.library.indexer import DEFAULT_EXCERPT, analyse_file, find_audio
    from soundalike.models import load_model

    torch.set_num_threads(1)
    model = load_model(args.model)
    members = list(getattr(model, "members", [model]))
    window = model.window
    files = sorted(find_audio([args.corpus]), key=lambda f: f.path)
    files = [files[i] for i in np.linspace(0, len(files) - 1, min(args.tracks, len(files))).round().astype(int)]
    costs = {stage: [] for stage in STAGES}
    whole = []
    with tempfile.TemporaryDirectory() as folder:
        catalogue = Catalogue(Path(folder) / "lib.sqlite")
        catalogue.bind_model(ModelDescription.of(args.model, model))
        for f in files:
            path = f.path
            clock = time.perf_counter()

            def lap(stage):
                nonlocal clock
                now = time.perf_counter()
                costs[stage].append(now - clock)
                clock = now

            meta = audio.read_metadata(path)
            lap("tags")
            source = audio._open(Path(path))
            lap("open")
            starts = analysis.excerpt_starts(meta.duration, DEFAULT_EXCERPT, window)
            if starts is None:  # too short for the excerpt: analysed whole
                starts = [0.0]
            seconds = window.length / window.sample_rate if len(starts) > 1 else None
            native = [list(source.blocks(s, seconds, seek=i > 0)) for i, s in enumerate(starts)]
            source.close()
            lap("seek and decode")
            clips = [np.concatenate(list(audio._resampled(iter(blocks), window.sample_rate))) for blocks in native]
            windows = [w for c in clips for w in analysis.iter_windows([c], window)][: len(starts) if seconds else None]
            lap("resample")
            batches = [torch.from_numpy(np.stack(windows[i:i + analysis.DEFAULT_BATCH]))
                       for i in range(0, len(windows), analysis.DEFAULT_BATCH)]
            with torch.inference_mode():
                logmels = [[m.logmel(b) for b in batches] for m in members]
                lap("front end")
                outputs = [[m.features_from_logmel(x) for x in mels] for m, mels in zip(members, logmels)]
                embeddings = np.concatenate([np.concatenate([o.embedding.numpy() for o in outs]) for outs in outputs],
                                            axis=1)
                logits = torch.cat([torch.cat([o.logits for o in outs]) for outs in outputs], dim=1)
                tags = model.probabilities(logits).numpy().mean(axis=0)
            lap("network")
            measured = musical.measure(clips, window.sample_rate)
            lap("measures")
            catalogue.put(TrackRecord(path=path, size=f.size, mtime_ns=f.mtime_ns, metadata=meta, excerpt=len(starts),
                                      vector=analysis.aggregate(embeddings), tags=tags, patches=embeddings,
                                      starts=np.asarray(starts, np.float32), musical=measured), model=args.model)
            lap("SQLite commit")
            t = time.perf_counter()
            analyse_file(f, model, DEFAULT_EXCERPT)
            whole.append(time.perf_counter() - t)
        catalogue.close()
    total = sum(sum(c) for c in costs.values())
    print(f"{len(files)} files of {args.corpus}, {args.model}, one torch thread; ms per track")
    print("| stage | median ms | mean ms | share |\n|---|---|---|---|")
    for stage, c in costs.items():
        print(f"| {stage} | {1000 * statistics.median(c):.1f} | {1000 * statistics.mean(c):.1f} | "
              f"{100 * sum(c) / total:.1f} % |")
    print(f"| **sum** | | **{1000 * total / len(files):.1f}** | |")
    print(f"| `analyse_file` in one piece (no commit) | {1000 * statistics.median(whole):.1f} | "
          f"{1000 * statistics.mean(whole):.1f} | |")


def speed(args) -> None:
    from soundalike.library.indexer import find_audio

    count = len(list(find_audio([args.corpus])))
    with contextlib.ExitStack() as stack:
        plain = ("--workers", str(args.workers))
        runs = {"this version": (versions.environment(None), plain)}
        if args.previous:
            tree = stack.enter_context(versions.worktree(args.previous))
            runs[f"soundalike {args.previous}"] = (versions.environment(tree), plain)
        for workers in filter(None, args.ray_workers.split(",")):
            runs[f"--ray local --workers {workers}"] = (versions.environment(None), ("--workers", workers, "--ray", "local"))
        for device in filter(None, args.devices.split(",")):
            runs[f"--device {device}"] = (versions.environment(None), (*plain, "--device", device))
        times = {name: [] for name in runs}
        for run in range(args.runs):
            for name in list(runs) if run % 2 == 0 else list(reversed(runs)):  # interleaved: the machine is shared
                env, options = runs[name]
                with tempfile.TemporaryDirectory() as folder:
                    t = time.perf_counter()
                    done = subprocess.run(versions.command("index", str(args.corpus), "--library", f"{folder}/lib.sqlite",
                                                           "--model", args.model, *options),
                                          env=env, capture_output=True, text=True)
                    times[name].append(time.perf_counter() - t)
                    if done.returncode not in (0, 1):  # 1: some files failed (left out)
                        raise RuntimeError(done.stderr[-2000:])
                print(f"run {run + 1} {name}: {times[name][-1]:.1f} s", flush=True)
    print(f"{count} files, --model {args.model}, --workers {args.workers} unless said; "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, t in times.items():
        print(f"{name}: median {statistics.median(t):.1f} s, {count / statistics.median(t):.2f} tracks/s "
              f"(runs: {', '.join(f'{x:.1f}' for x in t)})")


def layers(args) -> None:
    import warnings

    import torch
    import torch.nn.functional as F

    from soundalike.models import load_model

    torch.set_num_threads(1)
    model = load_model("msd-musicnn").eval()
    front = model.frontend
    waveform = torch.from_numpy(np.random.default_rng(0).standard_normal((2, model.window.length)).astype(np.float32) * 0.1)

    def median_ms(f) -> float:
        with torch.inference_mode():
            f(), f()
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                f()
                times.append(time.perf_counter() - t)
        return 1000 * statistics.median(times)

    with torch.inference_mode():
        logmel = model.logmel(waveform)
        x = front.input_bn(logmel.unsqueeze(1))  # (2, 1, frames, mels)
        features = front(logmel)
        mid = model.midend(features)
    frames, mels = x.shape[2], x.shape[3]

    def conv_macs(block, out_time, out_freq):
        w = block.conv.weight
        return 2 * out_time * out_freq * w.shape[0] * w[0].numel()  # two patches

    rows = []
    for name, block in [(f"timbral {b.conv.kernel_size}", b) for b in front.timbral] + \
                       [(f"temporal {b.conv.kernel_size}", b) for b in front.temporal]:
        macs = conv_macs(block, frames, mels - block.conv.kernel_size[1] + 1)
        rows.append((name, macs, median_ms(lambda b=block: b.max_over_frequency(x))))
    mid_macs = 2 * frames * sum(layer.conv.weight.numel() for layer in model.midend.layers)
    rows.append(("mid end (3 conv1d)", mid_macs, median_ms(lambda: model.midend(features))))
    rows.append(("back end (pooling, dense)", 2 * sum(m.weight.numel() for m in (model.backend.dense, model.backend.output)),
                 median_ms(lambda: model.backend(mid))))
    rows.append(("log-mel front end", 0, median_ms(lambda: model.logmel(waveform))))
    whole = median_ms(lambda: model.features(waveform))
    print(f"MSD-MusiCNN, 2 patches per call, one torch thread ({torch.backends.cpu.get_cpu_capability()})")
    print("| layer | GFLOP (2 patches) | median ms | GFLOP/s |\n|---|---|---|---|")
    for name, macs, ms in rows:
        print(f"| {name} | {2 * macs / 1e9:.3f} | {ms:.2f} | {2 * macs / 1e9 / (ms / 1000):.0f} |" if macs else
              f"| {name} | | {ms:.2f} | |")
    total = sum(macs for _, macs, _ in rows)
    print(f"| **whole network** | **{2 * total / 1e9:.2f}** | **{whole:.2f}** | **{2 * total / 1e9 / (whole / 1000):.0f}** |")
    print("\nint8 (FBGEMM) against float32 (oneDNN), the timbral convolutions alone:")
    print("| convolution | float32 ms | int8 ms | speed-up | largest error / output range |\n|---|---|---|---|---|")
    torch.backends.quantized.engine = "fbgemm"
    padded = F.pad(x, (0, 0, 3, 3))
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # PyTorch 2.13 deprecates quantized tensors
        for block in front.timbral:
            w, b = block.conv.weight, block.conv.bias
            exact = F.conv2d(padded, w, b)
            lo, hi = float(padded.min()), float(padded.max())
            # 7-bit input, as PyTorch's FBGEMM configuration does: without VNNI, pairs of 8-bit
            # products are summed in 16 bits and would saturate
            qx = torch.quantize_per_tensor(padded, (hi - lo) / 127, round(-lo / ((hi - lo) / 127)), torch.quint8)
            scales = w.abs().amax(dim=(1, 2, 3)) / 127
            qw = torch.quantize_per_channel(w, scales, torch.zeros(len(scales), dtype=torch.long), 0, torch.qint8)
            packed = torch.ops.quantized.conv2d_prepack(qw, b, [1, 1], [0, 0], [1, 1], 1)
            out_lo, out_hi = float(exact.min()), float(exact.max())
            out_scale = (out_hi - out_lo) / 255
            out_zero = round(-out_lo / out_scale)
            error = float((torch.ops.quantized.conv2d(qx, packed, out_scale, out_zero).dequantize() - exact).abs().max())
            fp32 = median_ms(lambda: F.conv2d(padded, w, b))
            int8 = median_ms(lambda: torch.ops.quantized.conv2d(qx, packed, out_scale, out_zero))
            print(f"| {tuple(w.shape)} | {fp32:.2f} | {int8:.2f} | {fp32 / int8:.2f}x | {error / (out_hi - out_lo):.4f} |")
        # the same products as one int8 matrix product (torch._int_mm, torchao's dynamic quantization route)
        w = front.timbral[0].conv.weight
        columns = F.unfold(padded, w.shape[2:]).transpose(1, 2).reshape(-1, w[0].numel())  # (positions, taps)
        a = (columns / columns.abs().max() * 127).round().to(torch.int8).contiguous()
        b = (w.reshape(len(w), -1) / w.abs().max() * 127).round().to(torch.int8).t().contiguous()
        float_ms = median_ms(lambda: columns @ w.reshape(len(w), -1).t())
        runs, args.runs = args.runs, 3
        int_ms = median_ms(lambda: torch._int_mm(a, b))
        args.runs = runs
        print(f"\nThe timbral (7, 38) convolution as one matrix product: float32 {float_ms:.1f} ms, "
              f"torch._int_mm {int_ms:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("stages")
    p.add_argument("corpus", type=Path)
    p.add_argument("--tracks", type=int, default=40)
    p.add_argument("--model", default="msd-mtt-musicnn")
    p.set_defaults(func=stages)
    p = sub.add_parser("speed")
    p.add_argument("corpus", type=Path)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--previous", metavar="REF")
    p.add_argument("--model", default="msd-mtt-musicnn")
    p.add_argument("--ray-workers", default="", metavar="N,M", help="also index with --ray local and these --workers")
    p.add_argument("--devices", default="", metavar="D,E", help="also index with --device D (e.g. cuda)")
    p.set_defaults(func=speed)
    p = sub.add_parser("layers")
    p.add_argument("--runs", type=int, default=30)
    p.set_defaults(func=layers)
    args = parser.parse_args()
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
