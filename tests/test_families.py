"""Sonic families over catalogues of controlled vectors: the automatic count finds planted
clusters, names come from the tags typical of each, playlists, stability, CLI and API."""

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from soundalike import ParameterError, families
from soundalike.audio import TrackMetadata
from soundalike.cli import main
from soundalike.library import Library
from soundalike.library.catalogue import ModelDescription, TrackRecord
from soundalike.playlist_files import read_m3u

DIM = 8
TAGS = ("music", "piano", "guitar", "drums")
# cluster -> (axis, size, tag probabilities): "music" is as probable everywhere, so it names no family
CLUSTERS = {"a": (0, 12, (0.9, 0.7, 0.1, 0.1)), "b": (1, 10, (0.9, 0.1, 0.6, 0.2)), "c": (2, 8, (0.9, 0.1, 0.2, 0.8))}


def add(lib, name, vector, tags):
    vector = np.asarray(vector, np.float32)
    record = TrackRecord(path=f"/music/{name}.mp3", size=1, mtime_ns=1,
                         metadata=TrackMetadata(f"artist {name}", name, "Album", None, 200.0), excerpt=0,
                         vector=vector, tags=np.asarray(tags, np.float32), patches=vector[None, :],
                         starts=np.zeros(1, np.float32))
    return lib.catalogue.put(record)


def planted(path, clusters=CLUSTERS, tags=TAGS) -> Library:
    """Tracks a0.., b0.., c0.. near axes 0, 1, 2, each cluster with its own tag profile."""
    lib = Library(path, create=True)
    lib.catalogue.bind_model(ModelDescription("test", tags, (DIM,), (1.0,)))
    rng = np.random.default_rng(0)
    for name, (axis, size, probabilities) in clusters.items():
        for i in range(size):
            v = np.zeros(DIM)
            v[axis] = 1
            v[3 + i % 5] += 0.2
            v += 0.02 * rng.standard_normal(DIM)
            add(lib, f"{name}{i}", v, probabilities[:len(tags)])
    return lib


@pytest.fixture
def lib(tmp_path):
    library = planted(tmp_path / "planted.sqlite")
    yield library
    library.close()


def names_of(lib, ids):
    return [t.title for t in lib.catalogue.tracks(ids.tolist())]


def test_the_automatic_count_finds_the_planted_clusters_and_names_them_by_their_typical_tags(lib):
    found = families.library_families(lib)
    assert found.automatic and max(found.silhouettes, key=found.silhouettes.get) == 3
    assert [f.name for f in found.families] == ["piano", "guitar", "drums"]  # never "music": everywhere alike
    assert [(f.number, f.size) for f in found.families] == [(1, 12), (2, 10), (3, 8)]  # numbered by size
    for family, cluster in zip(found.families, "abc"):
        assert {title[0] for title in names_of(lib, family.ids)} == {cluster}
        assert family.tags[0][1] > 1  # the lift: library standard deviations above the library's mean
    # most typical first: the nearest the family's centre
    vectors = lib.vectors(found.families[0].ids)
    closeness = vectors @ vectors.mean(axis=0)
    assert closeness[0] == closeness.max()


def test_a_given_count_is_kept_and_measures_nothing(lib):
    found = families.library_families(lib, 2)
    assert not found.automatic and found.silhouettes == {}
    assert len(found.families) == 2 and sum(f.size for f in found.families) == 30


def test_more_families_than_tracks_is_refused(lib):
    with pytest.raises(ParameterError, match="^the library has 30 tracks: ask for 30 families or fewer, not 31$"):
        families.library_families(lib, 31)


@pytest.mark.parametrize("planted_count", [2, 5, 9])
def test_choose_count_finds_well_separated_clusters(planted_count):
    rng = np.random.default_rng(planted_count)
    centres = np.linalg.qr(rng.standard_normal((32, 32)))[0][:planted_count]
    vectors = np.repeat(centres, 30, axis=0) + 0.1 * rng.standard_normal((planted_count * 30, 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    count, silhouettes = families.choose_count(vectors.astype(np.float32))
    assert count == planted_count and min(silhouettes) == 2


def test_a_large_library_is_fitted_on_a_sample_and_every_track_joins_a_family(monkeypatch):
    monkeypatch.setattr(families, "FIT_SAMPLE", 200)
    monkeypatch.setattr(families, "CHOOSE_SAMPLE", 100)
    rng = np.random.default_rng(1)
    centres = np.eye(16)[:4]
    truth = np.repeat(np.arange(4), 500)
    vectors = (centres[truth] + 0.15 * rng.standard_normal((2000, 16))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels, found_centres, _ = families.cluster(vectors)
    assert found_centres.shape == (4, 16)
    pairs = set(zip(truth.tolist(), labels.tolist()))
    assert len(pairs) == 4 and len({label for _, label in pairs}) == 4  # each planted cluster is one family


def test_the_same_tracks_in_any_order_give_the_same_families(lib):
    ids, vectors = lib.catalogue.arrays("vector")
    _, tags = lib.catalogue.arrays("tags")
    unit = lib.space.project(vectors)
    once = families.group(ids, unit, tags, list(TAGS))
    shuffled = np.random.default_rng(3).permutation(len(ids))
    again = families.group(ids[shuffled], unit[shuffled], tags[shuffled], list(TAGS))
    assert [(f.name, f.ids.tolist()) for f in once.families] == [(f.name, f.ids.tolist()) for f in again.families]
    assert once.silhouettes == again.silhouettes


def test_families_without_tags_are_numbered(tmp_path):
    with planted(tmp_path / "untagged.sqlite", tags=()) as untagged:
        found = families.library_families(untagged)
    assert [f.name for f in found.families] == ["family 1", "family 2", "family 3"]
    assert [f.tags for f in found.families] == [[], [], []]


def test_names_leave_out_synonyms_and_tags_a_family_rarely_has(tmp_path):
    """"keys" follows "piano" everywhere (a synonym); "rare" is most typical of cluster a
    but only 5 % probable there: neither names a family."""
    tags = ("music", "piano", "keys", "rare", "drums")
    clusters = {"a": (0, 12, (0.9, 0.7, 0.68, 0.05, 0.1)), "b": (1, 10, (0.9, 0.1, 0.12, 0.0, 0.2)),
                "c": (2, 8, (0.9, 0.1, 0.1, 0.0, 0.8))}
    with planted(tmp_path / "synonyms.sqlite", clusters, tags) as library:
        found = families.library_families(library)
    # without the rules: "piano, keys, rare" for a, and b named by the keys it barely has more of
    assert [f.name for f in found.families] == ["piano", "family 2", "drums"]
    assert [[tag for tag, _ in f.tags] for f in found.families] == [["piano"], [], ["drums"]]


def test_same_tags_in_two_families_are_told_apart(tmp_path):
    alike = {name: (axis, size, (0.9, 0.7, 0.1, 0.1)) for name, (axis, size, _) in CLUSTERS.items()}
    alike["c"] = (2, 8, (0.9, 0.1, 0.1, 0.9))
    with planted(tmp_path / "alike.sqlite", alike) as library:
        found = families.library_families(library)
    assert [f.name for f in found.families] == ["piano", "piano (2)", "drums"]


def test_file_names_keep_safe_characters():
    family = families.Family(3, "Hip-Hop, r&b / Soul", [], np.zeros(0, np.int64))
    assert family.file_name == "03-hip-hop-r-b-soul.m3u8"
    assert families.Family(12, "  ", [], np.zeros(0, np.int64)).file_name == "12-family.m3u8"


def test_playlists_are_written_one_per_family_and_read_back(lib, tmp_path):
    found = families.library_families(lib)
    written = families.write_playlists(lib, found, tmp_path / "out" / "families")
    assert [p.name for p in written] == ["01-piano.m3u8", "02-guitar.m3u8", "03-drums.m3u8"]
    for path, family in zip(written, found.families):
        entries = read_m3u(path)
        assert [e.path for e in entries] == [t.path for t in lib.catalogue.tracks(family.ids.tolist())]
        assert entries[0].artist.startswith("artist ") and entries[0].duration == 200


def test_a_new_grouping_replaces_the_playlists_of_the_last_one_and_nothing_else(lib, tmp_path):
    out = tmp_path / "families"
    out.mkdir()
    (out / "01-mine.m3u8").write_text("#EXTM3U\n")  # the user's own
    three = families.write_playlists(lib, families.library_families(lib, n=3), out)
    two = families.write_playlists(lib, families.library_families(lib, n=2), out)
    assert sorted(p.name for p in out.glob("*.m3u8")) == sorted(["01-mine.m3u8", *(p.name for p in two)])
    assert {p.name for p in three} - {p.name for p in two}  # one of them was removed


def test_playlists_refuse_a_file_for_a_folder(lib, tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(ParameterError, match="taken is a file; give a folder for the families' playlists$"):
        families.write_playlists(lib, families.library_families(lib), tmp_path / "taken")


# --- the command -----------------------------------------------------------------------------------
def test_cli_lists_families_with_examples_and_writes_playlists(lib, tmp_path, capsys):
    out = tmp_path / "lists"
    assert main(["families", "--library", str(lib.path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "3 families (chosen by silhouette):"
    assert lines[1] == "  1  piano  (12 tracks)" and lines[1 + 1 + families.EXAMPLES] == "  2  guitar  (10 tracks)"
    first = lib.catalogue.tracks(families.library_families(lib).families[0].ids[:families.EXAMPLES].tolist())
    assert lines[2:2 + families.EXAMPLES] == [f"       {t.label}  (id {t.id})" for t in first]
    assert captured.err == f"wrote 3 playlists to {out}\n"
    assert sorted(p.name for p in out.iterdir()) == [".soundalike-families", "01-piano.m3u8", "02-guitar.m3u8",
                                                     "03-drums.m3u8"]


def test_cli_json_is_the_same_twice(lib, capsys):
    answers = []
    for _ in range(2):
        families._families.cache_clear()  # computed anew, as by another process
        assert main(["families", "--library", str(lib.path), "--json", "-n", "3"]) == 0
        answers.append(capsys.readouterr().out)
    assert answers[0] == answers[1]
    found = json.loads(answers[0])
    assert found["automatic"] is False and [f["size"] for f in found["families"]] == [12, 10, 8]
    first = found["families"][0]
    assert first["name"] == "piano" and first["tags"][0]["tag"] == "piano" and len(first["ids"]) == 12
    assert [e["id"] for e in first["examples"]] == first["ids"][:families.EXAMPLES]


def test_cli_says_what_is_wrong(lib, tmp_path, capsys):
    assert main(["families", "--library", str(lib.path), "-n", "99"]) == 2
    assert capsys.readouterr().err == ("soundalike: error: the library has 30 tracks: ask for 30 families or fewer, "
                                       "not 99\n")
    Library(tmp_path / "empty.sqlite", create=True).close()
    assert main(["families", "--library", str(tmp_path / "empty.sqlite")]) == 1
    empty = tmp_path / "empty.sqlite"
    assert capsys.readouterr().err.startswith(f"soundalike: the library at {empty} has no tracks yet")


# --- the API ---------------------------------------------------------------------------------------
@pytest.fixture
def client(lib):
    from soundalike.server import create_app

    with TestClient(create_app(lib.path)) as c:
        yield c


def test_api_lists_families_with_examples(client, lib):
    answer = client.get("/api/families", params={"examples": 2}).json()
    assert answer["automatic"] is True and set(answer["silhouettes"]) >= {"2", "3"}
    assert [(f["number"], f["name"], f["size"]) for f in answer["families"]] == [
        (1, "piano", 12), (2, "guitar", 10), (3, "drums", 8)]
    example = answer["families"][0]["examples"][0]
    assert example["title"].startswith("a") and [t["tag"] for t in example["tags"][:2]] == ["music", "piano"]
    assert len(answer["families"][0]["examples"]) == 2


def test_api_gives_each_track_its_family_for_the_map(client, lib):
    members = client.get("/api/families/members", params={"n": 3}).json()
    assert members["names"] == ["piano", "guitar", "drums"]
    titles = {t.id: t.title for t in lib.catalogue.tracks()}
    assert sorted(members["ids"]) == sorted(titles)
    assert {"abc"[family] for i, family in zip(members["ids"], members["family"]) if titles[i][0] == "b"} == {"b"}


def test_api_family_tracks_and_playlist(client, lib):
    tracks = client.get("/api/families/2/tracks", params={"limit": 4, "offset": 1}).json()
    assert len(tracks) == 4 and all(t["title"].startswith("b") for t in tracks)
    everything = client.get("/api/families/2/tracks").json()
    assert [t["id"] for t in everything[1:5]] == [t["id"] for t in tracks]
    response = client.get("/api/families/3/playlist.m3u8")
    assert response.status_code == 200 and response.headers["content-type"].startswith("audio/x-mpegurl")
    assert response.headers["content-disposition"] == 'attachment; filename="03-drums.m3u8"'
    assert response.text.startswith("#EXTM3U") and response.text.count("/music/c") == 8


def test_api_errors_are_sentences(client):
    assert client.get("/api/families/4/tracks").json() == {"detail": "no family 4: the library has 3"}
    response = client.get("/api/families", params={"n": 31})
    assert response.status_code == 422
    assert response.json() == {"detail": "the library has 30 tracks: ask for 30 families or fewer, not 31"}
    assert client.get("/api/families", params={"n": 0}).json() == {"detail": "n must be at least 1"}
