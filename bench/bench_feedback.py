"""Does radio learn? Simulated listeners with a hidden taste, on labelled libraries.

    python bench/bench_feedback.py [--gtzan LIB] [--soundtracks LIB] [--seeds 20] [--pairs 10] [--out FILE.md]

LIB is a library indexed from the corpus (``soundalike index ../shared/data/gtzan-dev
--library gtzan.sqlite``); gtzan-dev's labels come from file names (``jazz.00012``),
the soundtracks' from their folders (the game).

Each listener has a hidden taste: a pair of labels (e.g. "likes jazz and classical,
skips everything else"; ``--pairs`` random pairs besides the named ones), or a tag
("likes slow tracks": the quarter of the library the model finds slowest). A
radio starts from a neutral seed (a random track of the whole library, ``--seeds``
of them per listener) and plays 30 tracks; the listener skips (after 15 s) each
track outside their taste, and plays to the end and likes each inside. Reported,
over tracks 11-30: the skip rate of radio without learning (today's radio: the
listener's reactions are ignored) and with learning (the events so far, as
:func:`soundalike.feedback.taste_of` weighs them, steer each next pick); and of the
"for you" mix (20 tracks) built from the first 20 events of the learning radio. Means
over listeners and seeds, with 95 % bootstrap intervals over runs. Nothing is
written to the libraries.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from soundalike import feedback, playlists
from soundalike.library import Library
from soundalike.library.events import Event

ROOT = Path(__file__).resolve().parents[1]
PLAYED = 30  # tracks per radio
MEASURED = slice(10, 30)  # tracks 11-30
EVENTS_FOR_YOU = 20  # events the "for you" mix learns from
MIX_LENGTH = 20
SKIP_AFTER = 15.0  # seconds a listener gives a track outside their taste


@dataclasses.dataclass(frozen=True)
class Listener:
    name: str
    likes: Callable[[int], bool]  # track id -> inside the taste


def label_of(corpus: str, path: str) -> str:
    return Path(path).name.split(".")[0] if corpus == "gtzan" else Path(path).parent.name


def listeners(corpus: str, library: Library, pairs: int, rng: np.random.Generator) -> list[Listener]:
    tracks = library.catalogue.tracks()
    labels = {t.id: label_of(corpus, t.path) for t in tracks}
    names = sorted(set(labels.values()))
    chosen = [("jazz", "classical")] if corpus == "gtzan" else []
    while len(chosen) < pairs + (corpus == "gtzan"):
        pair = tuple(sorted(rng.choice(names, 2, replace=False)))
        if pair not in chosen:
            chosen.append(pair)
    out = [Listener(f"likes {a} and {b}", lambda i, taste=(a, b): labels[i] in taste) for a, b in chosen]
    ids, slow = library.tag_scores("slow")
    liked = set(ids[slow >= np.quantile(slow, 0.75)].tolist())
    out.append(Listener("likes slow tracks (tag)", liked.__contains__))
    return out


def listen(library: Library, listener: Listener, seed_id: int, learning: bool) -> tuple[list[bool], list[Event]]:
    """One radio of PLAYED tracks: whether each was skipped, and the events."""
    seeds = [library.seed(library.catalogue.track(seed_id))]
    settings = playlists.RadioSettings()
    history: list[int] = []
    events: list[Event] = []
    skipped: list[bool] = []
    clock = 0.0
    for _ in range(PLAYED):
        taste = feedback.taste_of(library, events, now=clock) if learning else None
        track = playlists.next_track(library, seeds, history, settings, taste=taste)
        if track is None:
            break
        history.append(track.id)
        skipped.append(not listener.likes(track.id))
        clock, events = react(listener, track, clock, events)
    return skipped, events


def react(listener: Listener, track, clock: float, events: list[Event]) -> tuple[float, list[Event]]:
    """The listener's reaction to a track at ``clock``: a skip, or a full play and a like."""
    if listener.likes(track.id):
        clock += track.duration or 180.0
        new = [Event("bench", track.id, track.path, "play", track.duration, "bench", clock),
               Event("bench", track.id, track.path, "like", None, "bench", clock)]
    else:
        clock += SKIP_AFTER
        new = [Event("bench", track.id, track.path, "skip", SKIP_AFTER, "bench", clock)]
    return clock, events + new


def for_you(library: Library, listener: Listener, events: list[Event]) -> list[bool] | None:
    """Skips over a "for you" mix built from ``events``; None when nothing was liked."""
    clock = events[-1].at if events else 0.0
    taste = feedback.taste_of(library, events, now=clock, half_life=feedback.PROFILE_HALF_LIFE)
    if not len(taste.liked_ids):
        return None
    mix = list(playlists.for_you(library, taste, length=MIX_LENGTH))
    return [not listener.likes(t.id) for t in mix]


def interval(values: list[float], rng: np.random.Generator, samples: int = 2000) -> tuple[float, float]:
    values = np.asarray(values, float)
    means = rng.choice(values, (samples, len(values))).mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def run_corpus(corpus: str, path: Path, seeds: int, pairs: int, rng: np.random.Generator) -> list[str]:
    rows = []
    with Library(path, readonly=True) as library:
        ids = library.catalogue.ids()
        totals = {"without": [], "with": [], "for you": []}
        for listener in listeners(corpus, library, pairs, rng):
            share = np.mean([listener.likes(int(i)) for i in ids])
            runs = {"without": [], "with": [], "for you": []}
            t0 = time.perf_counter()
            for seed_id in rng.choice(ids, seeds, replace=False):
                plain, _ = listen(library, listener, int(seed_id), learning=False)
                learnt, events = listen(library, listener, int(seed_id), learning=True)
                runs["without"].append(np.mean(plain[MEASURED]))
                runs["with"].append(np.mean(learnt[MEASURED]))
                first = [e for e in events if e.kind != "play"][:EVENTS_FOR_YOU]
                mix = for_you(library, listener, [e for e in events if e.at <= first[-1].at])
                if mix:
                    runs["for you"].append(np.mean(mix))
            for key, values in runs.items():
                totals[key] += values
            rows.append(f"| {corpus} | {listener.name} ({share:.0%} of tracks) | " + " | ".join(
                f"{np.mean(runs[k]):.2f}" if runs[k] else "-" for k in runs) +
                f" | {time.perf_counter() - t0:.0f} s |")
            print(rows[-1], file=sys.stderr, flush=True)
        cells = []
        for key in totals:
            low, high = interval(totals[key], rng)
            cells.append(f"**{np.mean(totals[key]):.2f}** [{low:.2f}, {high:.2f}]")
        rows.append(f"| {corpus} | **all {len(totals['without'])} runs** | " + " | ".join(cells) + " | |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtzan", type=Path, help="a library indexed from gtzan-dev")
    parser.add_argument("--soundtracks", type=Path, help="a library indexed from the soundtracks")
    parser.add_argument("--seeds", type=int, default=20, help="radios per listener (default 20)")
    parser.add_argument("--pairs", type=int, default=10, help="random pairs of labels as listeners (default 10)")
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    rng = np.random.default_rng(args.random_seed)
    lines = ["| corpus | listener | skip rate, tracks 11-30, without learning | with learning | "
             "\"for you\" after 20 events | time |", "|---|---|---|---|---|---|"]
    for corpus in ("gtzan", "soundtracks"):
        if getattr(args, corpus):
            lines += run_corpus(corpus, getattr(args, corpus), args.seeds, args.pairs, rng)
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
