"""The command line, run in-process and as a real console script."""

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import synth
from soundalike import MediaError, audio
from soundalike.audio import TrackMetadata
from soundalike.cli import build_parser, main
from soundalike.library import Library
from soundalike.library.catalogue import ModelDescription, TrackRecord


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "song.mp3"
    return synth.write(path, np.tile(synth.chord(9.0, 44_100), (2, 1)), 44_100)


def test_analyze_prints_top_tags(song, capsys):
    assert main(["analyze", str(song), "--top", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{song}  (msd-musicnn, 3 patches)")
    probs = [float(line.split()[0]) for line in out[1:]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True)


def test_analyze_writes_npz(song, tmp_path, capsys):
    out = tmp_path / "a.npz"
    assert main(["analyze", str(song), "--model", "mtt-musicnn", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["taggram"].shape == (3, 50)
    assert data["penultimate"].shape == (3, 200)
    assert list(data["tags"][:3]) == ["guitar", "classical", "slow"]
    assert not bool(data["padded"])


def test_analyze_json_and_padding_note(tmp_path, capsys):
    path = synth.write(tmp_path / "blip.wav", synth.tone(880, 0.5, 16_000), 16_000)
    assert main(["analyze", str(path), "--json", "--top", "2"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["patches"] == 1 and doc["padded"] is True and len(doc["tags"]) == 2
    assert "shorter than one 3.01 s patch" in captured.err


def test_analyze_with_a_model_without_tags(song, tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert main(["analyze", str(song), "--model", "descriptors", "--out", str(out)]) == 0
    assert "descriptors predicts no tags; --out saves its 77-d vectors" in capsys.readouterr().out
    assert np.load(out)["penultimate"].shape == (3, 77)


def test_bad_file_exits_2_naming_file_and_cause(tmp_path, capsys):
    path = tmp_path / "fake.mp3"
    path.write_text("not audio")
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("soundalike: error: ") and "fake.mp3: " in err


def test_console_script_runs(song):
    script = Path(sys.executable).parent / "soundalike"
    proc = subprocess.run([str(script), "analyze", str(song), "--top", "1", "--threads", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 patches" in proc.stdout


# --- text queries ----------------------------------------------------------------------

def _add(library, path, artist, title, album=None):
    """A track with a made-up 4-d vector (no audio needed to query a catalogue)."""
    vector = np.random.default_rng(len(library.catalogue.ids())).standard_normal(4).astype(np.float32)
    return library.catalogue.put(TrackRecord(path=path, size=1, mtime_ns=1,
                                             metadata=TrackMetadata(artist, title, album, None, 200.0), excerpt=0,
                                             vector=vector, tags=np.full(2, 0.5, np.float32),
                                             patches=vector[None, :], starts=np.zeros(1, np.float32)))


@pytest.fixture
def words_library(tmp_path):
    """Tracks all under a folder called "tracks", with words in their tags and file names."""
    path = tmp_path / "words.sqlite"
    with Library(path, create=True) as library:
        library.catalogue.bind_model(ModelDescription("test", ("calm", "loud"), (4,), (1.0,)))
        _add(library, "/music/tracks/ann/night_drive.mp3", "Ann", "Night Drive")
        _add(library, "/music/tracks/ann/night.mp3", "Ann", "Night")
        _add(library, "/music/tracks/bob/01.mp3", "Bob", "Nightfall", "Night Songs")
        _add(library, "/music/tracks/bob/02.mp3", "Bob", "Morning")
        _add(library, "/music/tracks/cy/track07.mp3", None, None)
        _add(library, "/music/tracks/cy/intro.mp3", "Cy", "Intro")
        _add(library, "/music/tracks/dee/intro.mp3", "Dee", "Intro")
        for i in range(8):
            _add(library, f"/music/tracks/eve/{i}.mp3", "Eve", f"Song {i}")
    return path


def _similar(library, query, capsys) -> tuple[str, str]:
    """(the seed's label, stderr) of ``similar QUERY``."""
    assert main(["similar", query, "--library", str(library), "-k", "1"]) == 0
    captured = capsys.readouterr()
    return captured.out.splitlines()[0].removeprefix("similar to ").removesuffix(":"), captured.err


def test_words_match_artist_title_album_and_file_name_never_folders(words_library, capsys):
    assert _similar(words_library, "track", capsys) == ("track07", "")  # not every file under tracks/
    assert _similar(words_library, "drive", capsys) == ("Ann - Night Drive", "")  # the file name
    assert _similar(words_library, "songs", capsys) == ("Bob - Nightfall", "")  # the album
    with Library(words_library) as library:
        assert library.catalogue.search_text("tracks") == [] and library.catalogue.count_text("music") == 0
    assert main(["tags", "tracks", "--library", str(words_library)]) == 2
    assert "'tracks': no such track id, file, or artist/title" in capsys.readouterr().err


def test_of_several_matches_the_one_titled_so_is_taken_silently(words_library, capsys):
    assert _similar(words_library, "night", capsys) == ("Ann - Night", "")
    assert _similar(words_library, "ann - NIGHT drive", capsys) == ("Ann - Night Drive", "")


def test_of_several_matches_the_first_is_taken_and_the_others_named(words_library, capsys):
    label, err = _similar(words_library, "intro", capsys)  # two tracks titled so: no exact choice
    assert label == "Cy - Intro"
    assert err == ("note: 2 tracks match 'intro': took 'Cy - Intro' (id 6); others: 'Dee - Intro' (id 7). "
                   "Give an id to choose one.\n")
    label, err = _similar(words_library, "song", capsys)
    assert label == "Bob - Nightfall"  # by artist, then title
    assert err == ("note: 9 tracks match 'song': took 'Bob - Nightfall' (id 3); others: 'Eve - Song 0' (id 8), "
                   "'Eve - Song 1' (id 9), 'Eve - Song 2' (id 10), 'Eve - Song 3' (id 11), 'Eve - Song 4' (id 12) "
                   "and 3 more. Give an id to choose one.\n")
    assert _similar(words_library, "7", capsys) == ("Dee - Intro", "")  # an id names one track


# --- messages --------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["similar", "x"], ["radio", "x"], ["path", "x", "y"], ["tags", "x"],
                                     ["search", "--tag", "rock"]])
def test_queries_of_an_empty_library_say_to_index_first(command, tmp_path, capsys):
    path = tmp_path / "empty.sqlite"
    Library(path, create=True).close()
    assert main([*command, "--library", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"soundalike: the library at {path} has no tracks yet; index some music first: "
                            "soundalike index ~/Music\n")


def test_stats_in_human_units(words_library, tmp_path, capsys):
    empty = tmp_path / "empty.sqlite"
    Library(empty, create=True).close()
    assert main(["stats", "--library", str(empty)]) == 0
    lines = dict(line.strip().split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["vector index"] == "no vector index yet" and lines["model"] == "none yet (no tracks)"
    assert main(["stats", "--library", str(words_library)]) == 0
    lines = dict(line.strip().split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["tracks"] == "15" and lines["vector index"] == "exact"
    assert lines["size on disk"].endswith(" KiB") and "None" not in lines.values()
    assert main(["stats", "--library", str(words_library), "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out)["bytes_on_disk"], int)


def corrupt_mp3(path: Path) -> Path:
    """An ID3 tag and random bytes: FFmpeg refuses it, libsndfile's libmpg123 prints notes trying."""
    from mutagen.id3 import ID3, TIT2

    path.write_bytes(b"")
    tag = ID3()
    tag.add(TIT2(encoding=3, text="Bad"))
    tag.save(path)
    with open(path, "ab") as out:
        out.write(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    return path


def test_decoder_chatter_is_logged_never_printed(tmp_path, capfd, caplog):
    bad = corrupt_mp3(tmp_path / "bad.mp3")
    with caplog.at_level(logging.INFO, logger="soundalike.audio"):
        with pytest.raises(MediaError, match="not a readable audio file"):
            audio.load(bad)
    assert capfd.readouterr().err == ""
    assert "Note: Illegal Audio-MPEG-Header" in caplog.text  # shown with -v
    assert audio.av.logging.get_level() is None  # FFmpeg's own log is off
    os.write(2, b"after\n")  # standard error is back where it was
    assert capfd.readouterr().err == "after\n"


def test_decoder_chatter_stays_captured_with_threads(tmp_path, capfd):
    bad = corrupt_mp3(tmp_path / "bad.mp3")

    def attempt(_):
        with pytest.raises(MediaError):
            audio.load(bad)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(attempt, range(16)))
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_index_lists_each_failure_once_and_says_when_it_finds_no_audio(tmp_path, capfd):
    music = tmp_path / "music"
    (music / "tracks").mkdir(parents=True)
    (music / "tracks" / "notes.txt").write_text("no music here")
    library = tmp_path / "lib.sqlite"
    assert main(["index", str(music), "--library", str(library), "--workers", "1"]) == 1
    err = capfd.readouterr().err
    assert f"soundalike: found no audio files in {music} (looked for .aac, .aif, .aiff, .ape, .au, .flac, " in err
    corrupt_mp3(music / "tracks" / "bad.mp3")
    assert main(["index", str(music), "--library", str(library), "--workers", "1"]) == 1
    captured = capfd.readouterr()
    assert (captured.out + captured.err).count("bad.mp3") == 1
    assert f"  failed: {music / 'tracks' / 'bad.mp3'}: not a readable audio file" in captured.out
    assert "MPEG" not in captured.err and "found no audio" not in captured.err


def test_every_option_says_what_it_does():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.help, f"soundalike {name} {action.option_strings or action.dest} has no help"
        assert f"usage: soundalike {name}" in command.format_help()  # argparse expands every help text
    assert "more than 50% of the library" in commands.choices["index"].format_help()
    path_help = commands.choices["path"].format_help()
    assert "library tracks" not in path_help and "any audio file" in path_help


# --- train -----------------------------------------------------------------------------

def test_train_says_where_its_cache_is_and_how_each_epoch_went(tmp_path, capsys):
    data = tmp_path / "data"
    for label, base in (("low", 110.0), ("high", 1760.0)):
        (data / label).mkdir(parents=True)
        for i in range(4):
            synth.write(data / label / f"{i}.wav", synth.chord(1.5, 16_000, seed=i, root=base), 16_000)
    args = ["train", "--data", f"folders:{data}", "--model", "raw-cnn", "--param", "channels=4",
            "--param", "seconds=1.0", "--epochs", "2", "--cache", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    cache = re.search(r"^decoded-audio cache: (\S+\.f16) \((\d+\.\d) KiB, written now\)$", err, re.M)
    assert cache and Path(cache[1]).parent == tmp_path / "cache"
    assert float(cache[2]) == round(Path(cache[1]).stat().st_size / 1024, 1)
    epochs = re.findall(r"^epoch (\d)/2: loss \d+\.\d{4}, validation accuracy \d\.\d{3}( \(best so far\))?, "
                        r"\d+\.\d s$", err, re.M)
    assert [e[0] for e in epochs] == ["1", "2"] and epochs[0][1] == " (best so far)"
    assert main([*args, "--out", str(tmp_path / "again")]) == 0
    assert f"decoded-audio cache: {cache[1]} ({cache[2]} KiB, reused)" in capsys.readouterr().err
