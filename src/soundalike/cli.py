"""The ``soundalike`` command: a thin layer over the library, no logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from . import __version__, audio
from .analysis import DEFAULT_BATCH, analyze_blocks
from .errors import SoundalikeError
from .models import DEFAULT_MODEL, REGISTRY, load_model

log = logging.getLogger("soundalike")


def _progress(blocks, *, total_seconds: float | None, sr: int, label: str):
    """Wrap a block stream in a progress bar counting seconds of audio (stderr, TTY only)."""
    from tqdm import tqdm

    with tqdm(total=round(total_seconds) if total_seconds else None, unit="s", desc=label,
              leave=False, disable=not sys.stderr.isatty(), dynamic_ncols=True) as bar:
        for block in blocks:
            bar.update(len(block) / sr)
            yield block


def cmd_analyze(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    sr = model.window.sample_rate
    meta = audio.read_metadata(args.file)
    total = args.duration or (meta.duration - args.start if meta.duration else None)
    blocks = audio.stream(args.file, sr=sr, start=args.start, duration=args.duration)
    result = analyze_blocks(_progress(blocks, total_seconds=total, sr=sr, label=Path(args.file).name),
                            model, batch_size=args.batch_size, offset=args.start)
    if result.padded:
        print(f"note: {args.file} is shorter than one {model.window.length / sr:.2f} s patch; "
              "it was zero-padded to one patch", file=sys.stderr)
    if args.out:
        np.savez_compressed(args.out, taggram=result.taggram, penultimate=result.embeddings,
                            tags=np.array(result.tags), starts=result.starts,
                            padded=np.array(result.padded), model=np.array(result.model))
    top = result.top_tags(args.top)
    if args.json:
        print(json.dumps({"file": os.fspath(args.file), "model": result.model,
                          "patches": len(result.taggram), "padded": result.padded,
                          "tags": [{"tag": t, "probability": round(p, 4)} for t, p in top]}))
    else:
        print(f"{args.file}  ({result.model}, {len(result.taggram)} patches)")
        for tag, p in top:
            print(f"  {p:6.3f}  {tag}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    common.add_argument("--threads", type=int, default=None,
                        help="CPU threads for the network (default: all cores)")
    parser = argparse.ArgumentParser(prog="soundalike", description="Recommend music by how it sounds.")
    parser.add_argument("--version", action="version", version=f"soundalike {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", parents=[common],
                       help="print a file's top tags; optionally save patch tags and embeddings")
    p.add_argument("file", help="an audio file (MP3, M4A, OGG, Opus, FLAC, WAV, AIFF...)")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(REGISTRY),
                   help=f"network (default {DEFAULT_MODEL})")
    p.add_argument("--out", help="write taggram (P, 50), penultimate (P, 200) and tags to this .npz")
    p.add_argument("--top", type=int, default=10, help="how many tags to print (default 10)")
    p.add_argument("--start", type=float, default=0.0, help="excerpt start, seconds")
    p.add_argument("--duration", type=float, default=None, help="excerpt length, seconds")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except SoundalikeError as exc:
        print(f"soundalike: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soundalike: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
