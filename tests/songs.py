"""A small synthesized music collection with tags: the library, playlist and server tests share it."""

from pathlib import Path

import mutagen
import numpy as np

import synth

RATE = 22_050
SONGS = [  # (file, artist, title, genre, recipe)
    ("a/low_chord.flac", "Ann", "Low Chord", "Ambient", ("chord", 0)),
    ("a/high_tone.mp3", "Ann", "High Tone", None, ("tone", 1760)),
    ("b/noise.ogg", "Bob", "Noise Wash", "Noise", ("noise", 0)),
    ("b/clicks.wav", "Bob", "Click Track", None, ("clicks", 0)),
    ("c/mid_chord.m4a", "Cy", "Mid Chord", "Ambient", ("chord", 5)),
    ("c/low_tone.opus", "Cy", "Low Tone", None, ("tone", 110)),
]
SECONDS = 7.0


def render(recipe, seconds=SECONDS, rate=RATE):
    kind, arg = recipe
    rng = np.random.default_rng(arg)
    if kind == "chord":
        return synth.chord(seconds, rate, seed=arg, root=220.0 * 2 ** (arg / 12))
    if kind == "tone":
        return synth.tone(arg, seconds, rate, 0.4)
    if kind == "noise":
        return (0.2 * rng.standard_normal((1, int(seconds * rate)))).astype(np.float32)
    y = np.zeros((1, int(seconds * rate)), np.float32)
    y[0, :: rate // 4] = 0.9
    return y


def write_song(root: Path, rel: str, artist, title, genre, recipe) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = synth.CODEC_RATES.get(path.suffix[1:], RATE)
    synth.write(path, np.tile(render(recipe, rate=rate), (2, 1)), rate)
    if path.suffix != ".wav":
        tagged = mutagen.File(path, easy=True)
        if tagged.tags is None:
            tagged.add_tags()
        tagged["artist"], tagged["title"] = artist, title
        if genre:
            tagged["genre"] = genre
        tagged.save()
    return path


def make_music(root: Path) -> Path:
    """The SONGS, plus the same recording as low_chord.flac as an MP3 elsewhere: a duplicate."""
    for song in SONGS:
        write_song(root, *song)
    write_song(root, "dupes/low_chord_copy.mp3", "Ann", "Low Chord (copy)", None, SONGS[0][4])
    return root


def indexed_library(tmp_path_factory) -> Path:
    """A library of the music above, indexed with the default model (for a module's tests)."""
    from soundalike.cli import main

    music = make_music(tmp_path_factory.mktemp("music"))
    path = tmp_path_factory.mktemp("lib") / "library.sqlite"
    assert main(["index", str(music), "--library", str(path), "--workers", "1"]) == 0
    return path
