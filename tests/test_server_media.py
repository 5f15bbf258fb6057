"""What the page plays and shows: audio browsers can play (the file or a cached Ogg Opus
transcode) and cover art (issue 13)."""

import base64
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import mutagen
import numpy as np
import pytest
from fastapi.testclient import TestClient
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC
from mutagen.mp4 import MP4, MP4Cover
from mutagen.oggvorbis import OggVorbis

import synth
from songs import indexed_library
from test_server_browse import add_track, copy_library
from soundalike.library.catalogue import Catalogue
from soundalike.server import create_app, media

RATE = 44_100
SECONDS = 3.0
PNG = b"\x89PNG\r\n\x1a\n" + b"png picture"
JPEG = b"\xff\xd8\xff\xe0" + b"jpeg picture"


def stereo(seconds: float = SECONDS, rate: int = RATE) -> np.ndarray:
    left = synth.chord(seconds, rate)[0]
    return np.stack([left, np.roll(left, 100)])


def with_picture(path: Path, data: bytes, mime: str) -> Path:
    """``path`` with ``data`` embedded as its front cover, the way its format stores one."""
    picture = Picture()
    picture.type, picture.mime, picture.data = 3, mime, data
    if path.suffix == ".flac":
        tagged = FLAC(path)
        tagged.add_picture(picture)
    elif path.suffix == ".m4a":
        tagged = MP4(path)
        tagged["covr"] = [MP4Cover(data, imageformat=MP4Cover.FORMAT_JPEG)]
    elif path.suffix == ".ogg":
        tagged = OggVorbis(path)
        tagged["metadata_block_picture"] = [base64.b64encode(picture.write()).decode()]
    else:  # ID3: MP3, AIFF
        tagged = mutagen.File(path)
        if tagged.tags is None:
            tagged.add_tags()
        tagged.tags.add(APIC(encoding=3, mime="image/jpeg", type=0, desc="back", data=JPEG))  # not the front
        tagged.tags.add(APIC(encoding=3, mime=mime, type=3, desc="front", data=data))
    tagged.save()
    return path


def music(folder: Path) -> dict[str, Path]:
    """Files of every kind these tests need, by name."""
    folder.mkdir()
    files = {
        "aiff": synth.write(folder / "stereo.aiff", stereo(), RATE),
        "wav24": synth.write(folder / "deep.wav", synth.chord(SECONDS, RATE), RATE, codec="pcm_s24le",
                             sample_format="s32"),
        "mp3": with_picture(synth.write(folder / "plain.mp3", stereo(), RATE), PNG, "image/png"),
        "m4a": with_picture(synth.write(folder / "plain.m4a", stereo(), RATE), JPEG, "image/jpeg"),
        "flac": with_picture(synth.write(folder / "plain.flac", stereo(), RATE), JPEG, "image/jpeg"),
        "ogg": with_picture(synth.write(folder / "plain.ogg", stereo(), RATE), PNG, "image/png"),
        "sndfile": synth.write(folder / "sndfile.flac", stereo(), RATE),
        "changing": synth.write(folder / "changing.aiff", stereo(), RATE),
        "parallel": synth.write(folder / "parallel.aiff", stereo(), RATE),
        "corrupt": folder / "corrupt.mp3",
    }
    files["corrupt"].write_bytes(b"this is not audio at all" * 100)
    (folder / "album").mkdir()
    files["beside"] = synth.write(folder / "album" / "song.wav", stereo(), RATE)
    (folder / "album" / "Cover.JPG").write_bytes(JPEG)
    return files


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(client, {name: track id}, {name: file}) over a library with the files of :func:`music`."""
    path = copy_library(indexed_library(tmp_path_factory), tmp_path_factory.mktemp("media"))
    files = music(path.parent / "music")
    with Catalogue(path) as catalogue:
        source = int(catalogue.ids()[0])
        ids = {name: add_track(catalogue, source, file, "Media", name, None, SECONDS) for name, file in files.items()}
    with TestClient(create_app(path)) as client:
        yield client, ids, files


def cache_files(client) -> list[Path]:
    library = client.app.state.library.path
    return sorted(Path(f"{library}.cache/audio").glob("*.opus"))


def decoded(content: bytes) -> tuple[str, str, int, float]:
    """(container, codec, channels, seconds) of encoded audio."""
    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return (container.format.name, stream.codec_context.codec.canonical_name, stream.codec_context.channels,
                samples / stream.codec_context.sample_rate)


@pytest.mark.parametrize("name, channels", [("aiff", 2), ("wav24", 1)])
def test_what_browsers_cannot_play_is_transcoded_to_ogg_opus(served, name, channels):
    client, ids, _ = served
    response = client.get(f"/api/tracks/{ids[name]}/audio")
    assert response.status_code == 200 and response.headers["x-soundalike-transcoded"] == "1"
    assert response.headers["content-type"] == "audio/ogg"
    container, codec, got_channels, seconds = decoded(response.content)
    assert (container, codec, got_channels) == ("ogg", "opus", channels)
    assert seconds == pytest.approx(SECONDS, abs=0.03)


def test_a_transcode_is_seekable_and_made_once(served):
    client, ids, _ = served
    url = f"/api/tracks/{ids['aiff']}/audio"
    whole = client.get(url)
    [cached] = [p for p in cache_files(client) if p.name.startswith(f"{ids['aiff']}-")]
    made = cached.stat().st_mtime_ns
    part = client.get(url, headers={"Range": "bytes=1000-2999"})
    assert part.status_code == 206 and part.content == whole.content[1000:3000]
    assert part.headers["content-range"] == f"bytes 1000-2999/{len(whole.content)}"
    assert part.headers["x-soundalike-transcoded"] == "1"
    assert client.get(url).content == whole.content
    assert cached.stat().st_mtime_ns == made  # served from the cache, not made again


def test_a_changed_file_is_transcoded_anew(served):
    client, ids, files = served
    url = f"/api/tracks/{ids['changing']}/audio"
    first = decoded(client.get(url).content)
    synth.write(files["changing"], stereo(2 * SECONDS), RATE)
    second = decoded(client.get(url).content)
    assert first[3] == pytest.approx(SECONDS, abs=0.03) and second[3] == pytest.approx(2 * SECONDS, abs=0.03)
    assert len([p for p in cache_files(client) if p.name.startswith(f"{ids['changing']}-")]) == 2


def test_requests_at_once_for_one_track_transcode_it_once(served, monkeypatch):
    client, ids, _ = served
    calls = []
    real = media.transcode

    def slow(source, target):
        calls.append(source)
        time.sleep(0.5)
        real(source, target)

    monkeypatch.setattr(media, "transcode", slow)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.get(f"/api/tracks/{ids['parallel']}/audio"), range(4)))
    assert len(calls) == 1
    assert all(a.status_code == 200 and a.content == answers[0].content for a in answers)
    assert not list(Path(f"{client.app.state.library.path}.cache/audio").glob("*.part"))


@pytest.mark.parametrize("name, media_type", [("mp3", "audio/mpeg"), ("m4a", "audio/mp4"), ("flac", "audio/flac"),
                                              ("ogg", "audio/ogg"), ("beside", "audio/wav")])
def test_what_browsers_play_is_served_as_it_is(served, name, media_type):
    client, ids, files = served
    response = client.get(f"/api/tracks/{ids[name]}/audio")
    assert response.status_code == 200 and response.content == files[name].read_bytes()
    assert response.headers["content-type"] == media_type
    assert "x-soundalike-transcoded" not in response.headers


def test_a_file_only_libsndfile_reads_is_transcoded(served, monkeypatch):
    client, ids, files = served
    refused, real = str(files["sndfile"]), av.open

    def ffmpeg_refuses(file, *args, **kwargs):  # as FFmpeg's Ogg demuxer refuses some valid Ogg Vorbis files
        if str(file) == refused:
            raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
        return real(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", ffmpeg_refuses)
    response = client.get(f"/api/tracks/{ids['sndfile']}/audio")
    assert response.status_code == 200 and response.headers["x-soundalike-transcoded"] == "1"
    container, codec, channels, seconds = decoded(response.content)
    assert (container, codec, channels) == ("ogg", "opus", 1) and seconds == pytest.approx(SECONDS, abs=0.03)


def test_a_file_that_does_not_decode_is_a_422_sentence(served):
    client, ids, _ = served
    response = client.get(f"/api/tracks/{ids['corrupt']}/audio")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith(f"track {ids['corrupt']} (corrupt.mp3) cannot be played: not a readable audio file")
    assert not [p for p in cache_files(client) if p.name.startswith(f"{ids['corrupt']}-")]


def test_the_cache_keeps_the_most_recently_played_within_its_bound(served, tmp_path):
    _, ids, files = served
    size = len(_transcoded(files["aiff"], tmp_path))
    cache = media.AudioCache(tmp_path / "library.sqlite", max_bytes=int(2.5 * size))
    first = cache.get(1, files["aiff"])
    second = cache.get(2, files["parallel"])
    os.utime(second, ns=(10**9, 10**9))  # played longer ago than the first
    third = cache.get(3, files["mp3"])
    assert cache.folder == tmp_path / "library.sqlite.cache" / "audio"
    assert first.exists() and third.exists() and not second.exists()
    assert sum(p.stat().st_size for p in cache.folder.iterdir()) <= cache.max_bytes


def _transcoded(source: Path, folder: Path) -> bytes:
    target = folder / "probe.opus"
    media.transcode(source, target)
    data = target.read_bytes()
    target.unlink()
    return data


@pytest.mark.parametrize("name, data, media_type", [
    ("mp3", PNG, "image/png"),  # ID3 APIC: the front cover, not the first picture
    ("m4a", JPEG, "image/jpeg"),  # MP4 covr
    ("flac", JPEG, "image/jpeg"),  # FLAC picture
    ("ogg", PNG, "image/png"),  # Vorbis comment METADATA_BLOCK_PICTURE
    ("beside", JPEG, "image/jpeg"),  # Cover.JPG in the folder
])
def test_cover_art(served, name, data, media_type):
    client, ids, _ = served
    response = client.get(f"/api/tracks/{ids[name]}/cover")
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"] == "private, max-age=86400"


def test_a_track_without_cover_art_is_a_404_sentence(served):
    client, ids, _ = served
    response = client.get(f"/api/tracks/{ids['aiff']}/cover")
    assert response.status_code == 404 and response.json() == {"detail": f"track {ids['aiff']} has no cover art"}
