"""Every dataset kind, read from a tiny synthesized copy in its real on-disk layout, and the
contract all of them keep."""

from pathlib import Path

import numpy as np
import pytest
import synth

from soundalike import ParameterError
from soundalike.datasets import LOADERS, SPLITS, Dataset, open_dataset

RATE = 16_000


def _clip(path: Path, freq: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return synth.write(path, synth.tone(freq, 0.5, RATE), RATE)


def make_folders(root: Path) -> str:
    for label, freq in (("piano", 220), ("synth", 880)):
        for i in range(4):
            _clip(root / label / "sub" / f"{i}.wav", freq + i)
    (root / "loose.wav").write_bytes((root / "piano" / "sub" / "0.wav").read_bytes())  # no label folder
    return f"folders:{root}"


def make_csv(root: Path) -> str:
    rows = ["path,labels,group"]
    for i in range(6):
        _clip(root / "audio" / f"{i}.flac", 300 + 50 * i)
        rows.append(f"audio/{i}.flac,{'rock;guitar' if i % 2 else 'piano'},artist{i // 2}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return f"csv:{root / 'labels.csv'}"


def make_gtzan(root: Path) -> str:
    for genre, freq in (("blues", 200), ("metal", 1200), ("jazz", 500)):
        for i in range(3):
            _clip(root / "genres" / genre / f"{genre}.{i:05d}.au", freq + i)
    return f"gtzan:{root}"


MTAT_TAGS = ["guitar", "classical", "slow", "rare"]


def make_mtat(root: Path) -> str:
    lines = ["\t".join(f'"{c}"' for c in ["clip_id", *MTAT_TAGS, "mp3_path"])]
    clip = 0
    for folder in "0ace":
        for song in range(2):
            for segment in range(2):
                rel = f"{folder}/artist{folder}{song}-album-0{song}-song{song}-{segment * 30}-{segment * 30 + 29}.mp3"
                _clip(root / rel, 200 + 100 * song + segment)
                tags = [song == 0, song == 1, True, clip == 0]
                lines.append("\t".join(f'"{v}"' for v in [clip, *(int(t) for t in tags), rel]))
                clip += 1
    (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
    return f"mtat:{root}"


def make_fma(root: Path) -> str:
    header = [["", "artist", "set", "set", "track", "track"],
              ["", "id", "split", "subset", "genre_top", "title"],
              ["track_id", "", "", "", "", ""]]
    rows = []
    splits = ["training"] * 4 + ["validation"] * 2 + ["test"] * 2  # FMA keeps an artist on one side
    for i, (tid, genre) in enumerate([(2, "Hip-Hop"), (5, "Hip-Hop"), (10, "Pop"), (140, "Folk"),
                                      (141, "Folk"), (148, "Pop"), (1000, "Rock"), (1001, "Rock")]):
        rows.append([str(tid), str(i // 2), splits[i], "small", genre, f"title {tid}"])
        _clip(root / "fma_small" / f"{tid:06d}"[:3] / f"{tid:06d}.mp3", 200 + 40 * i)
    rows.append(["2000", "9", "training", "large", "Rock", "not in the small subset"])
    rows.append(["2001", "9", "training", "small", "", "no genre_top"])
    (root / "fma_metadata").mkdir()
    text = "\n".join(",".join(r) for r in header + rows) + "\n"
    (root / "fma_metadata" / "tracks.csv").write_text(text)
    return f"fma:{root}"


def make_playlists(root: Path) -> str:
    paths = [_clip(root / "music" / f"{i}.flac", 200 + 60 * i) for i in range(6)]
    (root / "lists").mkdir()
    (root / "lists" / "a.m3u8").write_text("#EXTM3U\n../music/0.flac\n../music/1.flac\n../music/2.flac\n")
    (root / "lists" / "b.m3u").write_text(f"{paths[3]}\n{paths[4]}\n{root / 'music' / 'missing.flac'}\n{paths[5]}\n")
    return f"playlists:{root / 'lists'}"


MAKERS = {"folders": make_folders, "csv": make_csv, "gtzan": make_gtzan, "mtat": make_mtat, "fma": make_fma,
          "playlists": make_playlists}


def test_every_loader_has_a_maker():
    assert set(MAKERS) == set(LOADERS)


@pytest.fixture(params=sorted(MAKERS))
def dataset(request, tmp_path) -> Dataset:
    return open_dataset(MAKERS[request.param](tmp_path))


# --- the contract ----------------------------------------------------------------------

def test_tracks_exist_and_decode(dataset):
    assert dataset.tracks
    for key, track in dataset.tracks.items():
        assert track.key == key and track.path.is_file()
        assert set(track.labels) <= set(dataset.vocabulary)
    y = next(iter(dataset.tracks.values())).load(RATE)
    assert y.dtype == np.float32 and abs(len(y) - RATE // 2) < 1200


def test_licence_and_labels(dataset):
    assert dataset.licence
    assert dataset.vocabulary or dataset.kind == "playlists"
    assert all(t.labels for t in dataset.tracks.values()) or dataset.kind == "playlists"


def test_splits_cover_every_track_once_and_never_split_a_group(dataset):
    splits = dataset.splits(seed=3)
    assert set(splits) == set(SPLITS) and all(splits.values())
    keys = [t.key for tracks in splits.values() for t in tracks]
    assert sorted(keys) == sorted(dataset.tracks)
    side = {t.group or t.key: s for s, tracks in splits.items() for t in tracks}
    for s, tracks in splits.items():
        assert all(side[t.group or t.key] == s for t in tracks)


def test_splits_are_seeded(dataset):
    first, again = dataset.splits(seed=1), dataset.splits(seed=1)
    assert {s: [t.key for t in v] for s, v in first.items()} == {s: [t.key for t in v] for s, v in again.items()}


# --- what each layout means ---------------------------------------------------------------

def test_folders_label_is_the_first_folder(tmp_path):
    ds = open_dataset(make_folders(tmp_path))
    assert ds.vocabulary == ("piano", "synth") and len(ds.tracks) == 8 and not ds.multilabel


def test_csv_multilabel_with_groups(tmp_path):
    ds = open_dataset(make_csv(tmp_path))
    assert ds.multilabel and ds.vocabulary == ("guitar", "piano", "rock")
    track = ds.tracks[str((tmp_path / "audio" / "1.flac").resolve())]
    assert track.labels == ("rock", "guitar") and track.group == "artist0"


def test_gtzan_genre_from_the_file_name(tmp_path):
    ds = open_dataset(make_gtzan(tmp_path))
    assert ds.vocabulary == ("blues", "jazz", "metal") and ds.tracks["metal.00002.au"].labels == ("metal",)
    assert "Tzanetakis" in ds.citation


def test_mtat_top_tags_folder_split_and_song_groups(tmp_path):
    from soundalike.datasets import mtat

    make_mtat(tmp_path)
    ds = mtat(tmp_path, top_n=3)
    assert ds.multilabel and ds.vocabulary == ("classical", "guitar", "slow")  # "rare" is not in the top 3
    assert ds.tracks["0"].labels == ("guitar", "slow") and ds.tracks["0"].split == "train"
    assert {t.split for t in ds.tracks.values()} == {"train", "valid", "test"}
    assert ds.tracks["8"].split == "valid" and ds.tracks["12"].split == "test"  # folders c and e
    assert ds.tracks["0"].group == ds.tracks["1"].group != ds.tracks["2"].group


def test_fma_two_row_header_subset_and_own_split(tmp_path):
    ds = open_dataset(make_fma(tmp_path))
    assert sorted(ds.tracks) == ["000002", "000005", "000010", "000140", "000141", "000148", "001000", "001001"]
    track = ds.tracks["000140"]
    assert track.labels == ("Folk",) and track.split == "train" and track.group == "1"
    assert ds.tracks["001001"].split == "test"
    assert track.path == tmp_path / "fma_small" / "000" / "000140.mp3"


def test_playlists_from_m3u_files_and_from_a_text_file(tmp_path):
    ds = open_dataset(make_playlists(tmp_path))
    assert [len(p) for p in ds.playlists] == [3, 3]  # the missing file is dropped
    text = tmp_path / "lists.txt"
    text.write_text("music/0.flac\tmusic/5.flac\n\nmusic/1.flac\n")
    ds = open_dataset(f"playlists:{text}")
    assert ds.playlists == [[str(tmp_path / "music" / "0.flac"), str(tmp_path / "music" / "5.flac")]]


@pytest.mark.parametrize("spec, message", [
    ("gtzan", "KIND:PATH"),
    ("nope:/tmp", "KIND one of folders"),
    ("folders:/does/not/exist", "no such file"),
])
def test_bad_data_specs(spec, message):
    with pytest.raises(ParameterError, match=message):
        open_dataset(spec)


def test_csv_without_header_names_the_problem(tmp_path):
    csv = tmp_path / "x.csv"
    csv.write_text("a.wav,rock\n")
    with pytest.raises(ParameterError, match="'path' and 'label'"):
        open_dataset(f"csv:{csv}")
