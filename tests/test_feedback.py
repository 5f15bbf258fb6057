"""Listening events and what radio learns from them, over a catalogue of controlled vectors."""

import csv
import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from soundalike import ParameterError, feedback
from soundalike.cli import main
from soundalike.library import Library, LibraryError, events
from soundalike.library.catalogue import ModelDescription
from soundalike.playlists import RadioSettings, for_you, next_track, radio, why_next
from test_playlists import add

DIM = 8
CLUSTERS = "abc"
PER_CLUSTER = 10


@pytest.fixture
def clusters(tmp_path):
    """Three clusters of 10 tracks (a0..a9 near axis 0, b near axis 1, c near axis 2),
    each track by its own artist, a few degrees apart within a cluster."""
    lib = Library(tmp_path / "clusters.sqlite", create=True)
    lib.catalogue.bind_model(ModelDescription("test", ("x", "y", "z"), (DIM,), (1.0,)))
    rng = np.random.default_rng(0)
    for axis, name in enumerate(CLUSTERS):
        for i in range(PER_CLUSTER):
            v = np.zeros(DIM)
            v[axis] = 1
            v[3 + i % 5] += 0.15 * (1 + i // 5)
            v += 0.01 * rng.standard_normal(DIM)
            add(lib, f"{name}{i}", v, f"artist {name}{i}", duration=150 + 5 * i + 60 * axis)  # none a duplicate
    yield lib
    lib.close()


def track(lib, name):
    return lib.catalogue.track_by_path(f"/music/{name}.mp3")


def cluster_of(t) -> str:
    return t.title[0]


def event(lib, name, kind, at, seconds=None):
    t = track(lib, name)
    return events.Event("p", t.id, t.path, kind, seconds, "api", at)


# --- events ----------------------------------------------------------------------------

def test_events_are_stored_per_profile_and_exported(clusters, tmp_path):
    a0, b0 = track(clusters, "a0"), track(clusters, "b0")
    events.record(clusters.catalogue, a0.id, "like", profile="ann", at=100.0)
    events.record(clusters.catalogue, b0.id, "skip", profile="ann", seconds=12.5, source="page", at=200.0)
    events.record(clusters.catalogue, b0.id, "dislike", profile="bob", source="cli", at=150.0)
    ann = events.events(clusters.catalogue, "ann")
    assert [(e.track_id, e.kind, e.seconds, e.source) for e in ann] == [(a0.id, "like", None, "api"),
                                                                        (b0.id, "skip", 12.5, "page")]
    assert [e.kind for e in events.events(clusters.catalogue, "bob")] == ["dislike"]
    assert events.profiles(clusters.catalogue) == [("ann", 2), ("bob", 1)]
    out = tmp_path / "events.csv"
    assert events.export_csv(clusters.catalogue, out) == 3
    rows = list(csv.DictReader(out.open()))
    assert [(r["profile"], r["kind"], r["time"]) for r in rows] == [
        ("ann", "like", "1970-01-01T00:01:40Z"), ("bob", "dislike", "1970-01-01T00:02:30Z"),
        ("ann", "skip", "1970-01-01T00:03:20Z")]
    assert rows[2]["path"] == "/music/b0.mp3" and rows[2]["seconds"] == "12.5"


def test_events_follow_a_track_by_its_path_and_outlive_it(clusters):
    a0 = track(clusters, "a0")
    events.record(clusters.catalogue, a0.id, "like", profile="ann")
    clusters.catalogue.remove([a0.path])
    assert [e.track_id for e in events.events(clusters.catalogue, "ann")] == [None]  # kept, not learnt from
    assert feedback.taste(clusters, "ann").empty
    new_id = add(clusters, "a0", clusters.vectors([track(clusters, "a1").id])[0], "artist a0")
    assert new_id != a0.id
    assert [e.track_id for e in events.events(clusters.catalogue, "ann")] == [new_id]


def test_bad_events_are_refused_with_sentences(clusters):
    a0 = track(clusters, "a0")
    with pytest.raises(ParameterError, match="event kind must be one of play, skip, like, dislike, got 'love'"):
        events.record(clusters.catalogue, a0.id, "love")
    with pytest.raises(ParameterError, match="no track has id 999"):
        events.record(clusters.catalogue, 999, "like")
    with pytest.raises(ParameterError, match=r"profile must be 1 to 64 letters, digits, spaces or _ \. @ \+ -, got 'a/b'"):
        events.record(clusters.catalogue, a0.id, "like", profile="a/b")
    path = clusters.path
    clusters.close()
    with Library(path, readonly=True) as lib, pytest.raises(LibraryError, match="cannot be written"):
        events.record(lib.catalogue, a0.id, "like")


@pytest.mark.parametrize(("position", "duration", "skip"), [
    (29.9, 60, True), (30.0, 60, False), (199, 600, True), (200, 600, False), (10, None, True), (31, None, False)])
def test_the_one_definition_of_a_skip(position, duration, skip):
    assert events.is_skip(position, duration) is skip


# --- learning ----------------------------------------------------------------------------

def test_skips_steer_the_next_pick_away_from_their_neighbourhood(clusters):
    seeds = [clusters.seed(track(clusters, "a0"))]
    settings = RadioSettings(random_seed=0)
    plain = next_track(clusters, seeds, [], settings)
    assert cluster_of(plain) == "a"
    skipped = [event(clusters, name, "skip", 100.0 + i, 10) for i, name in enumerate(["a1", "a2", "a3"])]
    taste = feedback.taste_of(clusters, skipped, now=110.0)
    learnt = next_track(clusters, seeds, [track(clusters, n).id for n in ("a1", "a2", "a3")], settings, taste=taste)
    assert cluster_of(learnt) != "a"
    assert next_track(clusters, seeds, [track(clusters, n).id for n in ("a1", "a2", "a3")], settings,
                      taste=taste).id == learnt.id  # deterministic
    skipped_ids = [track(clusters, n).id for n in ("a1", "a2", "a3")]
    assert re.fullmatch(r"away from “artist a[123] - a[123]” you skipped",
                        why_next(clusters, taste, seeds, skipped_ids, settings.keep_on, learnt))


def test_a_like_draws_the_radio_to_its_neighbours_and_says_why(clusters):
    seeds = [clusters.seed(track(clusters, "a0"))]
    taste = feedback.taste_of(clusters, [event(clusters, "b4", "like", 100.0)], now=100.0)
    first_b = next(t for t in radio(clusters, seeds, RadioSettings(), taste=taste) if cluster_of(t) == "b")
    plain_b = next(t for t in radio(clusters, seeds, RadioSettings()) if cluster_of(t) == "b")
    assert (first_b.title, plain_b.title) == ("b9", "b5")  # b9 is b4's nearest: the same offset, twice as far
    before = [t.id for t in radio(clusters, seeds, RadioSettings(), taste=taste)]
    before = before[:before.index(first_b.id)]
    assert why_next(clusters, taste, seeds, before, 3, first_b) == "near “artist b4 - b4” you liked"
    c0 = clusters.vectors([track(clusters, "c0").id])[0]
    assert taste.why(clusters, c0, c0) is None  # far from what was liked: no reason


def test_a_disliked_or_lately_skipped_track_never_returns(clusters):
    seeds = [clusters.seed(track(clusters, "a0"))]
    history = [event(clusters, "a1", "dislike", 0.0), event(clusters, "a2", "skip", 0.0, 5)]
    later = feedback.SKIP_MEMORY + 1  # the skip is forgotten, the dislike is not
    for now, never in ((1.0, {"a1", "a2"}), (later, {"a1"})):
        taste = feedback.taste_of(clusters, history, now=now)
        played = {t.title for t in radio(clusters, seeds, RadioSettings(), taste=taste)}
        assert played.isdisjoint(never) and len(played) == 3 * PER_CLUSTER - 1 - len(never)


def test_copies_of_a_disliked_or_liked_song_are_left_out_too(clusters):
    a1 = track(clusters, "a1")
    add(clusters, "a1-copy", clusters.catalogue.arrays("vector", [a1.id])[1][0], "another artist",
        duration=a1.duration + 1)
    taste = feedback.taste_of(clusters, [event(clusters, "a1", "dislike", 0.0)], now=1.0)
    seeds = [clusters.seed(track(clusters, "a0"))]
    assert "a1-copy" in {t.title for t in radio(clusters, seeds, RadioSettings())}
    assert "a1-copy" not in {t.title for t in radio(clusters, seeds, RadioSettings(), taste=taste)}
    liked = feedback.taste_of(clusters, [event(clusters, "a1", "like", 0.0)], now=1.0)
    assert "a1-copy" not in {t.title for t in for_you(clusters, liked)}


def test_identical_likes_make_one_cluster(clusters):
    raw = clusters.catalogue.arrays("vector", [track(clusters, "a1").id])[1][0]
    for i in range(6):  # six tracks with one sound: k-means would leave its other centres empty
        add(clusters, f"twin{i}", raw, f"twin artist {i}", duration=100 + 10 * i)
    liked = [event(clusters, f"twin{i}", "like", float(i)) for i in range(6)]
    taste = feedback.taste_of(clusters, liked, now=10.0, half_life=feedback.PROFILE_HALF_LIFE)
    centres, shares, member = feedback.clusters(taste)
    assert len(centres) == 1 and shares.tolist() == [1.0] and member.tolist() == [0] * 6
    assert len(list(for_you(clusters, taste, length=3))) == 3


def test_a_dislike_is_never_forgotten_and_a_later_like_takes_it_back(clusters):
    a1, a2 = track(clusters, "a1"), track(clusters, "a2")
    events.record(clusters.catalogue, a1.id, "dislike", at=1.0)
    events.record(clusters.catalogue, a2.id, "dislike", at=2.0)
    filler = [("default", a2.id, a2.path, "play", 1.0, "api", 10.0 + i) for i in range(feedback.MOST_EVENTS + 5)]
    clusters.catalogue.db.executemany(f"INSERT INTO events ({', '.join(events.COLUMNS)}) VALUES (?,?,?,?,?,?,?)",
                                      filler)
    events.record(clusters.catalogue, a2.id, "like")
    taste = feedback.taste(clusters)
    assert a1.id in taste.never and a1.id in taste.disliked  # 2,000 events later
    assert a2.id not in taste.never and a2.id in taste.liked_ids


def test_old_events_weigh_less_and_a_long_play_counts_as_liking(clusters):
    half = feedback.SESSION_HALF_LIFE
    c1, c2 = track(clusters, "c1").duration, track(clusters, "c2").duration
    history = [event(clusters, "a1", "like", 0.0), event(clusters, "b1", "like", half),
               event(clusters, "c1", "play", half, 0.8 * c1), event(clusters, "c2", "play", half, 0.7 * c2)]
    taste = feedback.taste_of(clusters, history, now=half)
    weights = dict(zip((clusters.catalogue.track(int(i)).title for i in taste.liked_ids), taste.like_weights))
    assert weights == pytest.approx({"a1": 0.5, "b1": 1.0, "c1": feedback.WEIGHTS["play"]})


def test_for_you_takes_turns_between_the_kinds_of_music_liked(clusters):
    liked = [event(clusters, f"{c}{i}", "like", 100.0) for c in "ac" for i in range(3)]
    liked.append(event(clusters, "b0", "skip", 100.0, 3))
    taste = feedback.taste_of(clusters, liked, now=100.0, half_life=feedback.PROFILE_HALF_LIFE)
    centres, shares, member = feedback.clusters(taste)
    assert len(centres) == 2 and np.allclose(shares, 0.5) and sorted(np.bincount(member)) == [3, 3]
    mix = list(for_you(clusters, taste, length=8))
    assert [cluster_of(t) for t in mix].count("a") == 4 and [cluster_of(t) for t in mix].count("c") == 4
    assert not {t.title for t in mix} & {"a0", "a1", "a2", "c0", "c1", "c2", "b0"}  # liked, skipped: not replayed
    assert list(for_you(clusters, taste, length=8)) == mix  # the same taste, the same mix
    with pytest.raises(ParameterError, match="no liked or long-played tracks yet"):
        list(for_you(clusters, feedback.taste_of(clusters, [], now=0.0), length=1))


# --- the command line and the API ----------------------------------------------------

def test_like_dislike_feedback_and_for_you_on_the_command_line(clusters, tmp_path, capsys):
    lib = str(clusters.path)
    assert main(["like", "a3", "--library", lib, "--profile", "ann"]) == 0
    assert capsys.readouterr().out == f"liked 'artist a3 - a3' (id {track(clusters, 'a3').id}, profile 'ann')\n"
    assert main(["dislike", "a4", "--library", lib, "--profile", "ann"]) == 0
    assert main(["like", "c3", "--library", lib]) == 0
    capsys.readouterr()
    assert main(["radio", "--for-you", "--library", lib, "--profile", "ann", "--length", "3", "--json"]) == 0
    mix = json.loads(capsys.readouterr().out)
    assert all(cluster_of_title(t["title"]) == "a" and t["title"] != "a4" for t in mix)
    assert mix[0]["why"] == "near “artist a3 - a3” you liked; away from “artist a4 - a4” you disliked"
    out = tmp_path / "ann.csv"
    assert main(["feedback", "--library", lib, "--profile", "ann", "--export", str(out)]) == 0
    assert [r["kind"] for r in csv.DictReader(out.open())] == ["like", "dislike"]
    assert main(["feedback", "--library", lib, "--all-profiles", "--json"]) == 0
    assert [(e["profile"], e["kind"]) for e in json.loads(capsys.readouterr().out)] == [
        ("ann", "like"), ("ann", "dislike"), ("default", "like")]
    assert main(["radio", "a0", "--for-you", "--library", lib]) == 2
    assert "give seed songs, or --for-you" in capsys.readouterr().err
    assert main(["radio", "--for-you", "--library", lib, "--profile", "nobody"]) == 2
    assert "no liked or long-played tracks yet" in capsys.readouterr().err


def cluster_of_title(title: str) -> str:
    return title[0]


def test_feedback_api_tells_skips_from_plays_and_keeps_profiles_apart(clusters):
    from soundalike.server import create_app

    path = clusters.path
    clusters.close()
    client = TestClient(create_app(path))
    with Library(path) as lib:
        a0, a1, b1, b2 = (track(lib, name) for name in ("a0", "a1", "b1", "b2"))
    r = client.post("/api/listened", json={"track": a1.id, "seconds": 12, "profile": "ann", "source": "page"})
    assert r.status_code == 201 and r.json()["kind"] == "skip" and r.json()["source"] == "page"
    assert client.post("/api/listened", json={"track": a1.id, "seconds": 12, "ended": True,
                                              "profile": "ann"}).json()["kind"] == "play"
    # b2 is 220 s long: left at 150 s, a play (not long enough to count as liking)
    assert client.post("/api/listened", json={"track": b2.id, "seconds": 150, "profile": "ann"}).json()["kind"] == "play"
    assert client.post("/api/feedback", json={"track": b1.id, "kind": "like", "profile": "ann"}).status_code == 201
    assert [e["kind"] for e in client.get("/api/feedback", params={"profile": "ann"}).json()] == [
        "like", "play", "play", "skip"]
    assert client.get("/api/feedback").json() == []  # the default profile heard nothing
    r = client.post("/api/feedback", json={"track": a1.id, "kind": "like", "profile": "a/b"})
    assert r.status_code == 422
    assert r.json()["detail"] == "profile must be 1 to 64 letters, digits, spaces or _ . @ + -"
    assert client.post("/api/feedback", json={"track": 999, "kind": "like"}).json()["detail"].startswith(
        "no track has id 999")
    radio_pick = client.post("/api/radio/next", json={"seeds": [a0.id], "history": [a1.id], "profile": "ann"}).json()
    assert radio_pick["why"] == "away from “artist a1 - a1” you skipped"  # b1, liked, is too far to be named
    assert "why" not in client.post("/api/radio/next", json={"seeds": [a0.id]}).json()
    mix = client.post("/api/foryou/next", json={"profile": "ann"}).json()
    assert cluster_of_title(mix["title"]) == "b" and mix["why"].startswith("near “artist b1 - b1” you liked")
    r = client.post("/api/foryou/next", json={"profile": "bob"})
    assert r.status_code == 422 and "no liked or long-played tracks yet" in r.json()["detail"]
