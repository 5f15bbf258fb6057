"""The ``soundalike`` command: a thin layer over the library, no logic of its own.

Heavy libraries (PyTorch, scikit-learn, matplotlib, the decoders) are imported only by
the commands that use them, so that ``--help``, ``stats``, ``search``, ``tags`` and
``similar`` on a library track answer at once (tests/test_startup.py, bench/bench_startup.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
import functools
import json
import logging
import os
import socket
import sys
from pathlib import Path

import numpy as np

from . import __version__, audio, musical, playlists, recommend
from .analysis import DEFAULT_BATCH, analyze_blocks
from .errors import ParameterError, SoundalikeError
from .library import Library, events, indexer
from .library.events import DEFAULT_PROFILE, check_profile
from .models import DEFAULT_LIBRARY_MODEL, DEFAULT_MODEL, FORMER_LIBRARY_DEFAULTS, REGISTRY, is_model_path, load_model, torch_device
from .playlist_files import Entry, write_m3u, write_xspf
from .train.config import INITS, MODELS, TrainConfig
from .units import human_size


SUBSONIC_USER_HELP = ("the server's user; the password is read from $SOUNDALIKE_SUBSONIC_PASSWORD or asked "
                      "($SOUNDALIKE_SUBSONIC_API_KEY: an OpenSubsonic API key instead)")


class EmptyLibraryError(SoundalikeError):
    """A query of a library that holds no tracks yet (exit status 1)."""


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
              "it was repeated to fill one patch", file=sys.stderr)
    if args.out:
        np.savez_compressed(args.out, taggram=result.taggram, penultimate=result.embeddings,
                            tags=np.array(result.tags), starts=result.starts,
                            padded=np.array(result.padded), model=np.array(result.model))
    top = result.top_tags(args.top)
    if args.json:
        print(json.dumps({"file": os.fspath(args.file), "model": result.model,
                          "patches": len(result.taggram), "padded": result.padded,
                          "tags": recommend.tag_dicts(top)}))
    else:
        print(f"{args.file}  ({result.model}, {len(result.taggram)} patches)")
        for tag, p in top:
            print(f"  {p:6.3f}  {tag}")
        if not result.tags:
            print(f"  ({result.model} predicts no tags; --out saves its {result.embeddings.shape[1]}-d vectors)")
    return 0


def _model_for_run(args: argparse.Namespace, catalogue) -> tuple[str, bool]:
    """(model to analyse with, whether this run re-analyses the whole library), with notes
    on stderr about a library left on a former default or a re-analysis under way."""
    current, staged = catalogue.model, catalogue.staged_model
    if args.reanalyze:
        if not current:
            raise ParameterError(f"{catalogue.path} holds no tracks to re-analyse; index a folder first")
        return args.model or (staged.name if staged else DEFAULT_LIBRARY_MODEL), True
    if not current:
        return args.model or DEFAULT_LIBRARY_MODEL, False
    if args.model:
        catalogue.refuse_other_model(args.model)
    if args.model is None and current in FORMER_LIBRARY_DEFAULTS and catalogue.get_meta("model_choice") != "explicit":
        print(f"note: this library was analysed with {current}, the default of soundalike before 0.2; the default "
              f"is now {DEFAULT_LIBRARY_MODEL}, which finds music that sounds alike better (see the README). "
              "'soundalike index --reanalyze' re-analyses the whole library with it; the library keeps "
              f"answering with {current} until that is done.", file=sys.stderr)
    if staged is not None:
        print(f"note: a re-analysis with {staged.name} is under way ({len(catalogue.unstaged())} tracks left); "
              "'soundalike index --reanalyze' continues it", file=sys.stderr)
    return args.model or current, False


def _switch(catalogue, model_name: str, plan) -> list[tuple[str, str]] | None:
    """After a re-analysis run: switch the library to it when every track is done, and
    return the files that failed it (in this run or an earlier one); else say what is
    left and return None."""
    left = catalogue.unstaged()
    if left:
        missing = sorted(set(left) & set(plan.missing))
        print(f"the re-analysis with {model_name} is not complete: {len(left)} tracks are left"
              + (f", {len(missing)} of them because their files are not there (e.g. {missing[0]}); make them "
                 "reachable and run 'soundalike index --reanalyze' again, or if they are gone for good, "
                 "'soundalike index FOLDER' on their folder removes them" if missing else "")
              + f". The library keeps using {catalogue.model} until then.")
        return None
    failed = catalogue.finish_staging()
    print(f"the library now uses {model_name}: every track re-analysed"
          + (f"; {len(failed)} that failed left the library" if failed else ""))
    return failed


def cmd_index(args: argparse.Namespace) -> int:
    if not args.dirs and not args.reanalyze and not args.subsonic:
        raise ParameterError("give the folders (or files) of music to index, or --subsonic URL")
    if args.ray and args.subsonic:
        raise ParameterError("--ray indexes files the cluster's nodes can read, not a Subsonic server's songs: "
                             "leave out one of --ray and --subsonic")
    if not args.ray:  # a cluster's GPUs are its nodes', not this machine's
        torch_device(args.device)
    path = _library_path(args)
    with _writing(path), Library(path, create=True) as library:
        return _index(args, library)


def _library_path(args: argparse.Namespace) -> Path:
    """The library a command names (``--library``, else the default), absolute."""
    from .library import library_path

    path = library_path(args.library)
    return path if isinstance(path, str) else path.resolve()  # a PostgreSQL URL as given


def _writing(path: Path):
    """The library's writer lock, saying so when another command holds it."""
    def wait():
        print(f"waiting for another 'soundalike index' or 'repair' on {path} to finish...", file=sys.stderr)

    return indexer.exclusive(path, on_wait=wait)


def _index(args: argparse.Namespace, library: Library) -> int:
    """``cmd_index`` holding the library's writer lock."""
    from tqdm import tqdm

    catalogue = library.catalogue
    new_library = catalogue.model is None
    model_name, reanalyze = _model_for_run(args, catalogue)
    if reanalyze:
        catalogue.begin_staging(indexer.describe(model_name))
    if args.subsonic:  # the server's songs instead of folders
        from .subsonic.commands import index_plan

        plan = index_plan(args, catalogue, reanalyze)
    else:
        plan = indexer.plan(catalogue, args.dirs, retry_failed=args.retry_failed, excerpt=args.excerpt,
                            reanalyze=reanalyze)
    for path, reason in plan.unreadable:
        print(f"soundalike: warning: cannot read {path} ({reason}); the tracks under it are kept",
              file=sys.stderr)
    found_none = not (plan.todo or plan.unchanged or plan.failed_before or reanalyze)
    if found_none:
        print(f"soundalike: found no audio files in {', '.join(args.dirs)} (looked for "
              f"{', '.join(sorted(indexer.AUDIO_EXTENSIONS))})", file=sys.stderr)
    tracks_before = catalogue.count()
    held = not args.prune and indexer.needs_prune(plan.removed_tracks, tracks_before)
    removed = 0 if held else catalogue.remove(plan.removed)
    failed, indexed, seconds = [], 0, 0.0
    if args.ray:
        from .library import ray_indexer

        outcomes = ray_indexer.run(catalogue, plan.todo, model_name=model_name, address=args.ray,
                                   workers=args.workers, excerpt=args.excerpt, reanalyze=reanalyze,
                                   device=args.device)
    else:
        outcomes = indexer.run(catalogue, plan.todo, model_name=model_name, workers=args.workers,
                               excerpt=args.excerpt, reanalyze=reanalyze, device=args.device)
    with tqdm(total=len(plan.todo), unit="track", desc="re-analysing" if reanalyze else "indexing",
              disable=not plan.todo or None, dynamic_ncols=True) as bar:
        for outcome in outcomes:  # failures are listed once, after the run
            bar.update(1)
            if outcome.reason is None:
                indexed += 1
                seconds += outcome.audio_seconds
            else:
                failed.append((outcome.path, outcome.reason))
            bar.set_postfix_str(f"{seconds / max(bar.format_dict['elapsed'], 1e-9):.0f}x real time"
                                + (f", {len(failed)} failed" if failed else ""))
    if reanalyze:
        failed = _switch(catalogue, model_name, plan) or failed
    if (new_library or reanalyze) and catalogue.model == model_name:
        catalogue.set_meta("model_choice", "explicit" if args.model else "default")
    aggregation = args.aggregate or library.aggregation
    if aggregation != "mean" or aggregation != library.aggregation:
        library.reaggregate(aggregation)
    if catalogue.count():  # a rebuild of a large index takes a while: a bar if over 2 s
        with tqdm(total=catalogue.count(), unit="track", desc="vector index", delay=2, dynamic_ncols=True) as bar:
            library.refresh_index(progress=lambda added: bar.update(added - bar.n), recentre=True)
            bar.update(bar.total - bar.n)
    print(f"indexed {indexed}, unchanged {plan.unchanged}, removed {removed}, failed {len(failed)}"
          f" ({catalogue.count()} tracks in {library.path})")
    if plan.failed_before:
        files = "1 file that failed before is" if plan.failed_before == 1 else \
            f"{plan.failed_before} files that failed before are"
        print(f"{files} unchanged and skipped (--retry-failed tries again)")
    for path, reason in failed:
        print(f"  failed: {path}: {reason}")
    if held:
        print(f"soundalike: {plan.removed_tracks} of the library's {tracks_before} tracks have no file any more "
              f"(e.g. {plan.removed[0]}) and were kept: that is more than {indexer.PRUNE_SHARE:.0%} of the "
              "library, as when a drive is not mounted or a folder was renamed. If they are gone for good, "
              "run the same command with --prune.", file=sys.stderr)
    if plan.unreadable:
        print(f"soundalike: {len(plan.unreadable)} folders or files could not be read (see the warnings above); "
              "their tracks were kept", file=sys.stderr)
    return 1 if failed or held or plan.unreadable or found_none else 0


def _print_tracks(library: Library, recommendations: list[recommend.Recommendation], as_json: bool) -> None:
    measured = library.catalogue.musical([r.track.id for r in recommendations])
    if as_json:
        print(json.dumps([{"rank": i, **r.as_dict(), **_musical_field(measured, r.track)}
                          for i, r in enumerate(recommendations, 1)], ensure_ascii=False))
        return
    for i, r in enumerate(recommendations, 1):
        tags = ", ".join(f"{t} {p:.2f}" for t, p in r.top_tags)
        print(f"{i:3d}  {r.score:6.3f}  {r.track.label}  [{tags}]{_measured_text(measured, r.track)}\n"
              f"                {r.track.path}")
    if not recommendations:
        print("no tracks match")


def _musical_field(measured: dict[int, musical.Musical], track) -> dict:
    """``{"musical": {...}}`` for a measured track in JSON output, else nothing."""
    return {"musical": measured[track.id].as_dict()} if track.id in measured else {}


def _measured_text(measured: dict[int, musical.Musical], track) -> str:
    """"  128 BPM 8A" (what is known of a track's tempo and key) for text output."""
    m = measured.get(track.id)
    parts = [f"{m.bpm:.0f} BPM" if m and m.bpm else None, m.camelot if m else None]
    return "".join(f"  {p}" for p in parts if p)


def _reading(args: argparse.Namespace) -> Library:
    """The library a query answers from; EmptyLibraryError when it has no tracks yet."""
    library = Library(args.library, create=False)
    if not library.catalogue.count():
        library.close()
        raise EmptyLibraryError(f"the library at {library.path} has no tracks yet; index some music first: "
                                "soundalike index ~/Music")
    return library


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def cmd_similar(args: argparse.Namespace) -> int:
    if args.start is not None or args.end is not None:
        return _similar_passages(args)
    measures = _measures(args)
    with _reading(args) as library:
        seed = library.resolve(args.query, note=_note)
        found = recommend.similar(library, seed, k=args.k, tag=args.tag, min_prob=args.min_prob,
                                  exclude_artist=args.exclude_artist, measures=measures)
        if not args.json:
            where = "" if seed.track else " (not in the library)"
            print(f"similar to {seed.track.label if seed.track else Path(seed.path).name}{where}:")
        _print_tracks(library, found, args.json)
    return 0


def _similar_passages(args: argparse.Namespace) -> int:
    """``similar --from/--to``: the tracks with the most similar passages, each from its best
    match, among those the filters keep (as plain ``similar``'s)."""
    from . import passages

    measures = _measures(args)
    with _reading(args) as library:
        query = passages.passage(library, args.query, args.start, args.end, note=_note)
        found = passages.similar_passages(library, query, k=args.k, tag=args.tag, min_prob=args.min_prob,
                                          exclude_artist=args.exclude_artist, measures=measures)
    if args.json:
        print(json.dumps([{"rank": i, **m.as_dict()} for i, m in enumerate(found, 1)], ensure_ascii=False))
        return 0
    time = functools.partial(passages.format_time, tenths=True)
    print(f"passages like {time(query.start)}-{time(query.end)} of {query.track.label if query.track else query.name}"
          f"{'' if query.track else ' (not in the library)'}:")
    for i, m in enumerate(found, 1):
        where = f"{i:3d}  {m.score:6.3f}  at {time(m.start):>8}  like {time(m.query_start):>8}  "
        print(f"{where}{m.track.label}{'  [same audio]' if m.own_audio else ''}\n{' ' * len(where)}{m.track.path}")
    if any(m.own_audio for m in found):
        print("[same audio]: the passage's own audio is there (it comes first whatever its score)")
    if not found:
        print("no tracks match")
    return 0


def _emit_playlist(library: Library, tracks, args: argparse.Namespace, why: list[str | None] | None = None) -> None:
    """Write or print a playlist; ``why``: a reason per track (radio with a taste), or None."""
    if args.replace and not args.mpd:
        raise ParameterError("--replace clears MPD's queue: give it with --mpd")
    why = why or [None] * len(tracks)
    measured = library.catalogue.musical([t.id for t in tracks if t.id is not None])
    entries = [Entry(t.path, t.artist, t.title, t.album, t.duration) for t in tracks]
    for out, write in ((args.m3u, write_m3u), (args.xspf, write_xspf)):
        if out:
            write(entries, out, relative=args.relative)
            print(f"wrote {len(entries)} tracks to {out}", file=sys.stderr)
    if args.json:
        print(json.dumps([{**t.as_dict(), **_musical_field(measured, t), **({"why": w} if w else {})}
                          for t, w in zip(tracks, why)], ensure_ascii=False))
    if args.mpd:
        from . import mpd

        added = mpd.enqueue(mpd.address(args.host, args.port, ask_password=args.password), tracks,
                            music_dir=args.music_dir, replace=args.replace, note=_note)
        print(f"added {added} tracks to MPD's queue", file=sys.stderr)
    if args.to_subsonic:
        from .subsonic.commands import emit

        emit(args, tracks)
    elif not (args.json or args.m3u or args.xspf or args.mpd):
        for i, (t, w) in enumerate(zip(tracks, why), 1):
            print(f"{i:3d}  {t.label}{_measured_text(measured, t)}\n       {t.path}" + (f"\n       why: {w}" if w else ""))


def _measures(args: argparse.Namespace) -> musical.Filter:
    """The --bpm, --key and --energy filter (ParameterError for a bad one, before any work)."""
    return musical.Filter(bpm=args.bpm, key=args.key, energy=args.energy)


def _transitions(args: argparse.Namespace) -> musical.Transitions:
    return musical.Transitions(harmonic=args.harmonic, bpm_step=args.bpm_step)


def _radio_settings(args: argparse.Namespace) -> playlists.RadioSettings:
    """Radio's options (``steering`` and ``chance``) as settings."""
    return playlists.RadioSettings(keep_on=args.keep_on, drunk=args.drunk, artist_gap=args.artist_gap,
                                   random_seed=args.random_seed)


def cmd_radio(args: argparse.Namespace) -> int:
    from . import feedback

    settings = _radio_settings(args)
    if bool(args.seeds) == args.for_you:
        raise ParameterError("give seed songs, or --for-you to play from what the profile likes, not both")
    measures, transitions = _measures(args), _transitions(args)
    with _reading(args) as library:
        check_profile(args.profile)
        allowed = library.allowed(measures=measures)
        if args.for_you:
            taste = feedback.taste(library, args.profile, half_life=feedback.PROFILE_HALF_LIFE)
            tracks = list(playlists.for_you(library, taste, settings, length=args.length, allowed=allowed,
                                            transitions=transitions))
            explain = functools.partial(playlists.why_for_you, library, taste)
        else:
            taste = feedback.taste(library, args.profile)
            seeds = [library.resolve(q, note=_note) for q in args.seeds]
            tracks = list(playlists.radio(library, seeds, settings, length=args.length, taste=taste, allowed=allowed,
                                          transitions=transitions))
            explain = functools.partial(playlists.why_next, library, taste, seeds, keep_on=args.keep_on)
        ids = [t.id for t in tracks]
        why = None if taste.empty else [explain(ids[:i], track=t) for i, t in enumerate(tracks)]
        if len(tracks) < args.length:
            rules = _rules(args)
            _note(f"only {len(tracks)} of the {args.length} tracks asked for could follow"
                  + (f" under {rules}" if rules else " (tracks played, their copies, artists heard lately and "
                     "what the profile never plays are left out)"))
        _emit_playlist(library, tracks, args, why)
    return 0


def _rules(args: argparse.Namespace) -> str:
    """The filters and DJ rules a playlist command was given, as typed ("--bpm 120-128, --harmonic")."""
    given = [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in ("bpm", "key", "energy", "bpm_step")
             if getattr(args, name, None) is not None]
    return ", ".join(given + (["--harmonic"] if getattr(args, "harmonic", False) else []))


def cmd_feel(args: argparse.Namespace) -> int:
    """``like`` and ``dislike``: one event for a library track."""
    with Library(args.library, create=False) as library:
        seed = library.resolve(args.query, note=_note)
        if seed.track is None:
            raise ParameterError(f"{args.query}: not a track of the library; only library tracks can be {args.command}d")
        events.record(library.catalogue, seed.track.id, args.command, profile=args.profile, source="cli")
        print(f"{args.command}d {seed.track.label!r} (id {seed.track.id}, profile {args.profile!r})")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    with Library(args.library, create=False) as library:
        profile = None if args.all_profiles else check_profile(args.profile)
        if args.export:
            n = events.export_csv(library.catalogue, args.export, profile)
            print(f"wrote {n} events to {args.export}", file=sys.stderr)
            return 0
        found = events.events(library.catalogue, profile)
        if args.json:
            print(json.dumps([e.as_dict() for e in found], ensure_ascii=False))
            return 0
        counts = events.profiles(library.catalogue)
        if not found:
            others = f"; profiles with events: {', '.join(name for name, _ in counts)}" if counts else ""
            whose = "" if profile is None else f" for profile {profile!r}"
            print(f"no listening events yet{whose}: like, dislike, skip or play tracks (soundalike like TRACK, the "
                  f"page, soundalike mpd){others}")
            return 0
        print("profiles: " + ", ".join(f"{name} ({n} events)" for name, n in counts))
        labels = {t.id: t.label for t in library.catalogue.tracks({e.track_id for e in found if e.track_id})}
        for e in found[-args.last:]:
            when = datetime.datetime.fromtimestamp(e.at).strftime("%Y-%m-%d %H:%M")
            seconds = f" at {e.seconds:.0f} s" if e.kind == "skip" and e.seconds is not None else (
                f" for {e.seconds:.0f} s" if e.seconds is not None else "")
            print(f"{when}  {e.profile:<10} {e.kind:<7} {labels.get(e.track_id, e.path)}{seconds}  ({e.source})")
    return 0


def cmd_mpd(args: argparse.Namespace) -> int:
    from . import mpd

    settings = _radio_settings(args)
    where = mpd.address(args.host, args.port, ask_password=args.password)
    with _reading(args) as library:
        check_profile(args.profile)
        mpd.serve(mpd.Radio(library, where, settings, ahead=args.ahead, music_dir=args.music_dir, tag=args.tag,
                            min_prob=args.min_prob, profile=args.profile, say=mpd.say))
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    measures, transitions = _measures(args), _transitions(args)
    with _reading(args) as library:
        waypoints = [library.resolve(q, note=_note) for q in args.songs]
        tracks = playlists.path(library, waypoints, length=args.length, drunk=args.drunk,
                                max_per_artist=args.max_per_artist, random_seed=args.random_seed,
                                allowed=library.allowed(measures=measures), transitions=transitions)
        _emit_playlist(library, tracks, args)
    return 0


def cmd_tags(args: argparse.Namespace) -> int:
    with _reading(args) as library:
        seed = library.resolve(args.query, note=_note)
        tags = library.seed_tags(seed, args.top)
        if args.json:
            print(json.dumps({"path": seed.path, "id": seed.track.id if seed.track else None,
                              "tags": recommend.tag_dicts(tags)}, ensure_ascii=False))
        else:
            print(seed.track.label if seed.track else seed.path)
            for tag, p in tags:
                print(f"  {p:6.3f}  {tag}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    measures = _measures(args)
    if args.tag is None and not measures.active:
        raise ParameterError("give --tag, or --bpm, --key or --energy to list the tracks that keep them")
    with _reading(args) as library:
        allowed = library.allowed(measures=measures)
        if args.tag is not None:
            _print_tracks(library, recommend.rank_by_tag(library, args.tag, k=args.k, allowed=allowed), args.json)
            return 0
        measured = library.catalogue.musical(allowed.tolist())
        tempo = {i: m.bpm for i, m in measured.items()}
        by_tempo = sorted(library.catalogue.tracks(allowed.tolist()),
                          key=lambda t: (tempo.get(t.id) is None, tempo.get(t.id) or 0.0, t.label))
        tracks = by_tempo[: args.k]
        if args.json:
            print(json.dumps([{"rank": i, **t.as_dict(), **_musical_field(measured, t)} for i, t in enumerate(tracks, 1)],
                             ensure_ascii=False))
            return 0
        for i, t in enumerate(tracks, 1):
            print(f"{i:3d}  {t.label}{_measured_text(measured, t)}\n       {t.path}")
        if not tracks:
            print("no tracks match")
    return 0


def cmd_families(args: argparse.Namespace) -> int:
    from . import families

    with _reading(args) as library:
        found = families.library_families(library, args.n)
        written = families.write_playlists(library, found, args.out, relative=args.relative) if args.out else []
        examples = {f.number: library.catalogue.tracks(f.ids[:families.EXAMPLES].tolist()) for f in found.families}
    if written:
        print(f"wrote {len(written)} playlists to {args.out}", file=sys.stderr)
    if args.json:
        print(json.dumps({"automatic": found.automatic, "silhouettes": found.silhouettes, "families": [
            {**f.as_dict(), "ids": f.ids.tolist(), "examples": [t.as_dict() for t in examples[f.number]],
             **({"playlist": str(w)} if written else {})}
            for f, w in zip(found.families, written or [None] * len(found.families))]}, ensure_ascii=False))
        return 0
    how = "chosen by silhouette" if found.automatic else "as asked"
    print(f"{len(found.families)} families ({how}):")
    for f in found.families:
        print(f"{f.number:3d}  {f.name}  ({f.size} tracks)")
        for t in examples[f.number]:
            print(f"       {t.label}  (id {t.id})")  # titles may repeat: the id tells the files apart
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .library import export

    with Library(args.library, create=False) as library:
        n = export.export(library, args.out)
    print(f"exported {n} tracks to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import evaluation
    from .evaluation import report

    items = evaluation.collect(args.path, args.labels, group_by=args.group_by)
    variants = [evaluation.Variant(aggregate=a, hop=args.hop, excerpt=args.excerpt, centre=not args.no_centre)
                for a in args.aggregate.split(",")]
    ks = tuple(int(k) for k in args.k.split(","))

    def progress(iterable, total, label):
        return tqdm(iterable, total=total, desc=label, unit="file", leave=False, dynamic_ncols=True)

    rows = evaluation.evaluate(items, args.models.split(","), variants, ks=ks, progress=progress)
    context = {"dataset": str(args.path), "labels": args.labels, "group_by": args.group_by, "items": len(items)}
    text = report.to_json(rows, context) if args.out and args.out.endswith(".json") else report.to_markdown(rows, context)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    print(report.to_markdown(rows, context) if not args.out or args.out.endswith(".json") else text)
    return 0


def _hyper_parameter(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import train

    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "params"]
    config = TrainConfig(params=dict(args.param), **{name: getattr(args, name) for name in fields})
    out = Path(args.out).expanduser().resolve()

    def progress(total, desc):
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty())

    def say(line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    run = train.train(config, out, device=args.device, progress=progress, say=say)
    train.report(run, out, device="cpu")
    print((out / "report.md").read_text(encoding="utf-8"))
    print(f"index with it: soundalike index DIR --model {out}", file=sys.stderr)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """ParameterError unless the server can listen on ``host``:``port`` (checked before the
    library loads, so a port in use is one line, not a traceback after seconds)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind((host, port))
    except OSError as exc:
        raise ParameterError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                             + ("; is another server using it? try --port" if exc.errno == errno.EADDRINUSE else "")
                             ) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server import check_bind, create_app

    check_bind(args.host, args.token)
    _check_port_free(args.host, args.port)
    limits = {"max_analyses": args.max_analyses} if args.max_analyses else {}
    settings = {"library_path": args.library, "token": args.token, "max_upload": args.max_upload_mb * 1024 * 1024,
                **limits}
    log_level = "info" if args.verbose else "warning"
    where = f"http://{args.host}:{args.port}/" + (f"?token={args.token}" if args.token else "")
    if args.workers > 1:
        return _serve_in_processes(args, settings, log_level, where)
    app = create_app(**settings, map_at_start=True)
    if args.subsonic_upstream:
        from .subsonic.commands import wrap_app

        app = wrap_app(app, args.subsonic_upstream)
    print(f"soundalike: serving {app.state.library.path} at {where} (API docs: /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=log_level)
    return 0


def _serve_in_processes(args: argparse.Namespace, settings: dict, log_level: str, where: str) -> int:
    """``serve --workers N``: N processes (uvicorn's), each with its app and connections,
    answering on one port (``where``); a library in PostgreSQL only, where processes share no file."""
    import uvicorn

    from .library import Library
    from .server import SETTINGS_ENV

    path = _library_path(args)
    if not isinstance(path, str):
        raise ParameterError("serve --workers N needs a library in PostgreSQL (--library postgresql://...); a SQLite "
                             "library is served by one process, whose requests already run in parallel threads")
    with Library(path) as library:  # opened once here: a bad URL or an empty library is said before any process starts
        shown = library.path
        library.refresh_index()  # built once, not by every worker at its first request
    os.environ[SETTINGS_ENV] = json.dumps({**settings, "library_path": path,
                                           "subsonic_upstream": args.subsonic_upstream})
    print(f"soundalike: serving {shown} at {where} with {args.workers} processes (API docs: /docs)", file=sys.stderr)
    uvicorn.run("soundalike.server:app_from_environment", factory=True, workers=args.workers, host=args.host,
                port=args.port, log_level=log_level)
    return 0


def cmd_subsonic_link(args: argparse.Namespace) -> int:
    from .subsonic.commands import cmd_link

    return cmd_link(args)


def cmd_repair(args: argparse.Namespace) -> int:
    from .library import repair

    path = _library_path(args)
    if isinstance(path, str):
        raise ParameterError("repair mends a SQLite library file; a library in PostgreSQL is kept whole by "
                             "PostgreSQL itself (its write-ahead log, backups with pg_dump)")
    with _writing(path):
        done = repair.repair(path)
    if done.kept is None:
        print(f"{path}: no damage found ({done.rows['tracks']} tracks); nothing to repair")
        return 0
    lost = "an unknown number of tracks (the damaged file cannot tell)" if done.lost is None else f"{done.lost} tracks"
    print(f"recovered {done.rows['tracks']} tracks and {done.rows['failures']} failure records of {path}; "
          f"lost {lost}" + (":" if done.lost_paths else ""))
    for missing in done.lost_paths[:20]:
        print(f"  lost: {missing}")
    if len(done.lost_paths) > 20:
        print(f"  ... and {len(done.lost_paths) - 20} more")
    print(f"the damaged file is kept as {done.kept}")
    if done.lost != 0:
        print("'soundalike index FOLDER' on the library's folders analyses the lost files again")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with Library(args.library, create=False) as library:
        stats = library.stats()
        failures = library.catalogue.failures()
    if args.json:
        print(json.dumps({**stats, "failures": [{"path": p, "reason": r} for p, r in failures]}))
        return 0
    for key, value in stats.items():
        label, shown = STATS_TEXT.get(key, (key, str))
        print(f"{label:>15}: {shown(value)}")
    for path, reason in failures:
        print(f"  failed: {path}: {reason}")
    return 0


# how `stats` writes the figures of Library.stats: key -> (label, value as text); others as they are
STATS_TEXT = {
    "model": ("model", lambda name: name or "none yet (no tracks)"),
    "reanalysis": ("re-analysis",
                   lambda r: "none under way" if r is None else f"with {r['model']}, {r['left']} tracks left"),
    "index": ("vector index", lambda kind: kind or "no vector index yet"),
    "hours": ("hours of music", str),
    "bytes_on_disk": ("size on disk", human_size),
}


def _integer(low: int, high: int | None = None):
    """An argparse type: an integer from ``low`` to ``high`` (inclusive; None: no limit)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {low} to {high}" if high is not None
                                             else f"{value} is too small: give {low} or more")
        return value

    return parse


def _fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give 0 to 1")
    return value


def _output_file(text: str) -> str:
    """An argparse type: a file to write, checked before any work: its folder exists."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {path.parent} does not exist")
    return str(path)


def _time(text: str) -> float:
    """An argparse type: seconds, from "83.5" or "1:23.5" (see :func:`soundalike.passages.parse_time`)."""
    from .passages import parse_time

    try:
        return parse_time(text)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _model_name(text: str) -> str:
    """A registered model's name, or a trained model's file or run directory as an absolute path."""
    if text in REGISTRY:
        return text
    if is_model_path(text):
        return str(Path(text).expanduser().resolve())
    raise argparse.ArgumentTypeError(f"{text!r} is neither a model ({', '.join(sorted(REGISTRY))}) "
                                     "nor a trained model's file or run directory")


TRAIN_NUMBERS = (  # TrainConfig's numbers as options: (field, type, what it is)
    ("vector_dim", int, "track2vec: size of the playlist vectors"),
    ("seed", int, "random seed of the data split, initial weights and crops"),
    ("epochs", int, "most epochs to train"),
    ("patience", int, "stop after this many epochs without a better validation figure"),
    ("batch_size", int, "crops per training step"),
    ("crops_per_track", int, "random training crops of each track per epoch"),
    ("eval_crops", int, "crops of each track averaged at validation and test"),
    ("lr", float, "learning rate (AdamW)"),
    ("weight_decay", float, "weight decay (AdamW)"),
    ("max_seconds", float, "decode at most this many seconds of each track, its middle"),
)
QUERY_HELP = ("a track of the library (its path, its id, or words of its artist, title, album or file name) "
              "or any audio file")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    common.add_argument("--threads", type=_integer(1), default=None,
                        help="CPU threads for the network (default: all cores)")
    parser = argparse.ArgumentParser(prog="soundalike", description="Recommend music by how it sounds.")
    parser.add_argument("--version", action="version", version=f"soundalike {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", parents=[common],
                       help="print a file's top tags; optionally save patch tags and embeddings")
    p.add_argument("file", help="an audio file (MP3, M4A, OGG, Opus, FLAC, WAV, AIFF...)")
    p.add_argument("--model", default=DEFAULT_MODEL, type=_model_name,
                   help=f"{', '.join(sorted(REGISTRY))} or a trained RUN_DIR (default {DEFAULT_MODEL})")
    p.add_argument("--out", type=_output_file, help="write taggram (P, 50), penultimate (P, 200) and tags to this .npz")
    p.add_argument("--top", type=_integer(1), default=10, help="how many tags to print (default 10)")
    p.add_argument("--start", type=float, default=0.0, help="excerpt start, seconds")
    p.add_argument("--duration", type=float, default=None, help="excerpt length, seconds")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_analyze)

    lib = argparse.ArgumentParser(add_help=False, parents=[common])
    lib.add_argument("--library", default=None,
                     help="library file (default: $SOUNDALIKE_LIBRARY or the user data directory)")

    p = sub.add_parser("index", parents=[lib], help="analyse a music collection into the library")
    p.add_argument("dirs", nargs="*", help="folders (or files) of music")
    p.add_argument("--workers", type=_integer(1), default=os.cpu_count() or 1,
                   help="parallel analysis processes, or with --ray the network's actors (default: one per core)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="decode and analyse on a Ray cluster: 'local' (a private one on this machine), 'auto', "
                        "HOST:PORT or ray://HOST:PORT; needs pip install 'soundalike[cluster]', and on every node "
                        "soundalike and the music at the same paths")
    p.add_argument("--device", default="cpu",
                   help="where the network runs: cpu (default), cuda, cuda:N or mps; decoding stays on the CPU. "
                        "With --ray, cuda puts the network's actors on the cluster's GPUs")
    p.add_argument("--excerpt", type=_integer(0), default=indexer.DEFAULT_EXCERPT,
                   help=f"analyse N evenly spread 3 s patches per track; 0 = every patch "
                        f"(default {indexer.DEFAULT_EXCERPT}: as good by our measure, 5x faster)")
    p.add_argument("--model", type=_model_name, default=None,
                   help=f"network for a new library: {', '.join(sorted(REGISTRY))} or a trained RUN_DIR "
                        f"(default {DEFAULT_LIBRARY_MODEL})")
    p.add_argument("--retry-failed", action="store_true", help="try files that failed before again")
    p.add_argument("--prune", action="store_true",
                   help=f"remove the tracks of deleted files even when they are more than "
                        f"{indexer.PRUNE_SHARE * 100:.0f}%% of the library (otherwise kept: a drive may be unmounted)")
    p.add_argument("--reanalyze", action="store_true",
                   help=f"re-analyse every track of the library with --model (default {DEFAULT_LIBRARY_MODEL}); "
                        "the library keeps answering with its old model until all are done, then switches at once")
    p.add_argument("--aggregate", choices=["mean", "tfidf"], default=None,
                   help="track vector from patches: mean (default) or TF-IDF weighted as in Deej-A.I.")
    p.add_argument("--subsonic", metavar="URL", help="index the songs of this Subsonic server through its API")
    p.add_argument("--user", help=SUBSONIC_USER_HELP)
    p.set_defaults(func=cmd_index)

    measures = argparse.ArgumentParser(add_help=False)
    measures.add_argument("--bpm", metavar="BPM", help=f"only tracks of this tempo: a range (120-128) or a value "
                          f"(124: within {musical.BPM_TOLERANCE * 100:g}%%); half or double time does not match")
    measures.add_argument("--key", help="only tracks in this key: 'A minor', 'Am', 'F#', 'Bb major', or Camelot '8A'; "
                          "several separated by commas")
    measures.add_argument("--energy", metavar="E", help=f"only tracks of this energy (0 calm to 1 loud and busy): a "
                          f"range (0.6-1) or a value (within {musical.ENERGY_TOLERANCE:g})")
    mixing = argparse.ArgumentParser(add_help=False)
    mixing.add_argument("--harmonic", action="store_true", help="each track's key compatible with the one before on "
                        "the Camelot wheel (same, one hour apart, or relative major/minor)")
    mixing.add_argument("--bpm-step", type=float, metavar="BPM", help="largest tempo change between consecutive "
                        "tracks, in BPM (half or double time counts as the same tempo)")

    p = sub.add_parser("similar", parents=[lib, measures], help="tracks that sound like a track or any audio file")
    p.add_argument("query", help=QUERY_HELP)
    p.add_argument("-k", type=_integer(1), default=10, help="how many (default 10)")
    p.add_argument("--tag", help="only tracks predicted to have this tag (or with this genre)")
    p.add_argument("--min-prob", type=_fraction, default=0.5, help="tag probability threshold (default 0.5)")
    p.add_argument("--exclude-artist", action="store_true", help="skip the seed's artist")
    p.add_argument("--from", dest="start", type=_time, metavar="TIME",
                   help="search by passage: the passage starting here (seconds or m:ss; default the start)")
    p.add_argument("--to", dest="end", type=_time, metavar="TIME",
                   help="search by passage: the passage ending here (seconds or m:ss; default the end)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: a list of {rank, score, id, path, artist, title, album, duration, tags}; "
                        "with --from/--to {rank, score, start, query_start, id, path, ...}, times in seconds")
    p.set_defaults(func=cmd_similar)

    chance = argparse.ArgumentParser(add_help=False)
    chance.add_argument("--drunk", type=_fraction, default=0.0, help="randomness, 0 (none) to 1 (adventurous)")
    chance.add_argument("--random-seed", type=_integer(0, 2**63 - 1), default=None, help="reproduce a random playlist")
    steering = argparse.ArgumentParser(add_help=False)
    steering.add_argument("--keep-on", type=_integer(1), default=3, help="steer by the last K tracks (default 3)")
    steering.add_argument("--artist-gap", type=_integer(0), default=3, help="no artist twice within G tracks (default 3)")
    player = argparse.ArgumentParser(add_help=False)
    player.add_argument("--host", default=None,
                        help="MPD's host, socket path or @abstract socket (default: $MPD_HOST, which may be "
                             "PASSWORD@HOST, else localhost)")
    player.add_argument("--port", type=_integer(1, 65535), default=None, help="MPD's port (default: $MPD_PORT, else 6600)")
    player.add_argument("--password", action="store_true",
                        help="ask MPD's password (default: the one in $MPD_HOST, PASSWORD@HOST, else none)")
    player.add_argument("--music-dir", default=None,
                        help="MPD's music directory on this machine (default: asked from MPD, over its socket)")

    out = argparse.ArgumentParser(add_help=False, parents=[chance, player])
    group = out.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print the playlist as JSON")
    group.add_argument("--m3u", type=_output_file, metavar="OUT", help="write an extended M3U8 playlist")
    out.add_argument("--to-subsonic", metavar="NAME", help="create or replace this playlist on the linked Subsonic server")
    out.add_argument("--subsonic", metavar="URL", help="which linked Subsonic server, when there are several")
    group.add_argument("--xspf", type=_output_file, metavar="OUT", help="write an XSPF playlist")
    out.add_argument("--relative", action="store_true", help="paths relative to the playlist file")
    out.add_argument("--mpd", action="store_true", help="add the playlist to MPD's queue (see --host)")
    out.add_argument("--replace", action="store_true", help="with --mpd: clear MPD's queue first")

    profile = argparse.ArgumentParser(add_help=False)
    profile.add_argument("--profile", default=DEFAULT_PROFILE,
                         help="whose listening: events are stored and learnt from per profile (default %(default)s)")

    p = sub.add_parser("radio", parents=[lib, out, steering, profile, measures, mixing],
                       help="keep playing songs like these")
    p.add_argument("seeds", nargs="*", help="seed songs: " + QUERY_HELP)
    p.add_argument("--for-you", action="store_true",
                   help="no seeds: play near what the profile liked and played through, away from what it skipped")
    p.add_argument("--length", type=_integer(1), default=20, help="tracks to play (default 20)")
    p.set_defaults(func=cmd_radio)

    p = sub.add_parser("mpd", parents=[lib, player, chance, steering, profile],
                       help="keep MPD's queue full of songs like those it plays (a daemon; stop it with Ctrl-C)")
    p.add_argument("--ahead", type=_integer(1), default=5, help="songs to keep queued after the current one (default 5)")
    p.add_argument("--tag", help="only tracks predicted to have this tag (or with this genre)")
    p.add_argument("--min-prob", type=_fraction, default=0.5, help="tag probability threshold (default 0.5)")
    p.set_defaults(func=cmd_mpd)

    for verb, what in (("like", "the radio plays more like it"), ("dislike", "the radio never plays it again")):
        p = sub.add_parser(verb, parents=[lib, profile], help=f"{verb} a track: {what}")
        p.add_argument("query", help="a track of the library: its path, its id, or words of its artist, title...")
        p.set_defaults(func=cmd_feel)

    p = sub.add_parser("feedback", parents=[lib, profile],
                       help="what the profile played, skipped, liked and disliked; export it as CSV")
    p.add_argument("--export", type=_output_file, metavar="OUT.csv",
                   help="write the events to this CSV file: profile, track_id, path, kind, seconds, source, at, time")
    p.add_argument("--all-profiles", action="store_true", help="every profile's events, not only --profile's")
    p.add_argument("--last", type=_integer(1), default=20, help="how many of the latest events to print (default 20)")
    p.add_argument("--json", action="store_true", help="print every event as JSON")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("path", parents=[lib, out, measures, mixing],
                       help="a journey from one song to another, through others")
    p.add_argument("songs", nargs="+", help="start, waypoints and end, each " + QUERY_HELP)
    p.add_argument("--length", type=_integer(2), default=12, help="tracks in all, waypoints included (default 12)")
    p.add_argument("--max-per-artist", type=_integer(1), default=None, help="cap tracks per artist")
    p.set_defaults(func=cmd_path)

    p = sub.add_parser("tags", parents=[lib], help="a track's predicted tags, most probable first")
    p.add_argument("query", help=QUERY_HELP)
    p.add_argument("--top", type=_integer(1), default=10, help="how many tags (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON: {path, id, tags: [{tag, probability}]}")
    p.set_defaults(func=cmd_tags)

    p = sub.add_parser("search", parents=[lib, measures],
                       help="the library's tracks ranked by the predicted probability of a tag, or those of a "
                            "tempo, key or energy (slowest first)")
    p.add_argument("--tag",
                   help="a tag the library's model predicts (e.g. rock, piano, female vocalists; "
                        "an unknown tag lists them all); without it, --bpm, --key or --energy lists the tracks "
                        "that keep them, slowest first")
    p.add_argument("-k", type=_integer(1), default=20, help="how many tracks (default 20)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: a list of {rank, score (with --tag: its probability), id, path, artist, "
                        "title, ..., musical}")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("families", parents=[lib], help="group the library into families of tracks that sound alike")
    p.add_argument("-n", type=_integer(1), default=None, help="how many families (default: chosen by silhouette)")
    p.add_argument("--out", metavar="DIR", help="write one M3U8 playlist per family into this folder")
    p.add_argument("--relative", action="store_true", help="paths relative to the playlist files")
    p.add_argument("--json", action="store_true",
                   help="print JSON: {automatic, silhouettes, families: [{number, name, size, tags, ids, examples}]}")
    p.set_defaults(func=cmd_families)

    p = sub.add_parser("export", parents=[lib], help="write ids, paths, metadata, vectors and tags")
    p.add_argument("--out", type=_output_file, required=True, help="FILE.npz or FILE.csv")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", parents=[common], help="measure how well embedders find similar music")
    p.add_argument("path", help="a folder of labelled audio files")
    p.add_argument("--labels", required=True, help="folder, filename, or a CSV of path,label[,group]")
    p.add_argument("--group-by", choices=["track", "artist", "album"], default="track",
                   help="items sharing this never count as hits for each other (default track)")
    p.add_argument("--models", default=f"descriptors,msd-musicnn,mtt-musicnn,{DEFAULT_LIBRARY_MODEL},random-musicnn",
                   help=f"embedders to compare: {', '.join(sorted(REGISTRY))}, NAME:tags (its tag probabilities "
                        "as vectors), or a trained RUN_DIR (default %(default)s)")
    p.add_argument("--k", default="5,10", help="precision cut-offs (default 5,10)")
    p.add_argument("--aggregate", default="mean", help="patch aggregations: mean, meanstd, tfidf (comma-separated)")
    p.add_argument("--hop", type=float, default=None, help="seconds between patches (default: side by side)")
    p.add_argument("--excerpt", type=_integer(0), default=indexer.DEFAULT_EXCERPT,
                   help=f"analyse N evenly spread 3 s patches per track, as 'index' does (default "
                        f"{indexer.DEFAULT_EXCERPT}, the library's default); 0 = every patch of the whole track")
    p.add_argument("--no-centre", action="store_true",
                   help="do not centre on the dataset's mean as a library does (each network's part is still "
                        "normalised and weighted)")
    p.add_argument("--out", type=_output_file, help="REPORT.md or REPORT.json")
    p.set_defaults(func=cmd_evaluate)

    defaults = TrainConfig(data="", model="spec-cnn")
    p = sub.add_parser("train", parents=[common], help="train a network on your data, then index with it")
    p.add_argument("--data", required=True, metavar="KIND:PATH",
                   help="KIND: folders, csv, gtzan, mtat, fma or playlists; PATH: its folder or file")
    p.add_argument("--model", required=True, choices=MODELS, metavar="MODEL",
                   help="the network to train: " + "; ".join(f"{name}: {what}" for name, what in MODELS.items()))
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (an existing run resumes)")
    p.add_argument("--init", choices=INITS, help="musicnn: fine-tune from shipped weights")
    p.add_argument("--embedder", type=_model_name, help="probe: the frozen embedder (a model name or RUN_DIR)")
    p.add_argument("--backbone", default=defaults.backbone, help="track2vec: the audio network (default %(default)s)")
    p.add_argument("--param", type=_hyper_parameter, action="append", default=[], metavar="NAME=VALUE",
                   help="a network hyper-parameter, e.g. channels=64 (repeatable)")
    for name, kind, what in TRAIN_NUMBERS:
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(defaults, name),
                       help=f"{what} (default {'all' if getattr(defaults, name) is None else getattr(defaults, name)})")
    p.add_argument("--cache", help="folder for the decoded-audio cache (default: $SOUNDALIKE_CACHE or the user cache directory)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (a GPU when present)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("serve", parents=[lib], help="the web page and HTTP API over the library")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s; others need --token)")
    p.add_argument("--port", type=_integer(0, 65535), default=8000, help="default %(default)s")
    p.add_argument("--token", default=os.environ.get("SOUNDALIKE_TOKEN"),
                   help="require this token on every request (default $SOUNDALIKE_TOKEN)")
    p.add_argument("--max-analyses", type=_integer(1), default=None,
                   help="uploads analysed at once; more are asked to retry (503) (default: 2)")
    p.add_argument("--max-upload-mb", type=_integer(1), default=100, help="upload size limit (default %(default)s MB)")
    p.add_argument("--subsonic-upstream", metavar="URL",
                   help="answer Subsonic apps at /rest: every call passed to this server, sonic similarity added")
    p.add_argument("--workers", type=_integer(1), default=1,
                   help="worker processes answering on the port (a library in PostgreSQL only; default 1: one "
                        "process, requests in threads); --max-analyses is per process")
    p.set_defaults(func=cmd_serve)

    subsonic = sub.add_parser("subsonic", help="link the library to a Subsonic server (Navidrome, gonic...)"
                              ).add_subparsers(dest="subsonic_command", required=True, metavar="COMMAND",
                                               help="link: match the server's songs to library tracks")
    p = subsonic.add_parser("link", parents=[lib], help="match the server's songs to library tracks (again: picks up changes)")
    p.add_argument("url", help="the server's address, as an app is given it")
    p.add_argument("--user", help=SUBSONIC_USER_HELP)
    p.set_defaults(func=cmd_subsonic_link)

    p = sub.add_parser("stats", parents=[lib], help="counts, failures, model, size on disk")
    p.add_argument("--json", action="store_true",
                   help="print JSON: the same figures (sizes in bytes) and the failed files as {path, reason}")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("repair", parents=[lib],
                       help="recover what can be read of a damaged library into a new file (the damaged one is kept)")
    p.set_defaults(func=cmd_repair)
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
    except EmptyLibraryError as exc:
        print(f"soundalike: {exc}", file=sys.stderr)
        return 1
    except SoundalikeError as exc:
        print(f"soundalike: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's refusal (a folder gone, no space, no permission): one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"soundalike: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soundalike: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
