"""Decoding and metadata on synthesized audio in every supported format."""

import os

import mutagen
import numpy as np
import pytest

import synth
from soundalike import MediaError, ParameterError, audio

SR = 16_000
# (extension, channels) each format's encoder accepts
FORMAT_CASES = [("wav", 1), ("wav", 6), ("aiff", 2), ("flac", 2), ("mp3", 2), ("m4a", 2),
                ("ogg", 2), ("opus", 1)]


def dominant_frequency(y: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spectrum) * sr / len(y))


@pytest.mark.parametrize("ext,channels", FORMAT_CASES)
def test_every_format_decodes_to_mono_16k(tmp_path, ext, channels):
    rate = synth.CODEC_RATES.get(ext, 44_100)
    path = synth.write(tmp_path / f"tone.{ext}", synth.tone(1000, 3.0, rate, 0.5, channels), rate)
    y = audio.load(path)
    assert y.dtype == np.float32 and y.ndim == 1
    # codecs add up to a few thousand samples of priming or padding
    assert abs(len(y) - 3 * SR) < 0.05 * SR
    middle = y[SR // 2 : 5 * SR // 2]
    assert dominant_frequency(middle) == pytest.approx(1000, abs=2)
    # mean downmix: identical channels keep the amplitude (lossy codecs within 10 %)
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


@pytest.mark.parametrize("rate", [8_000, 11_025, 22_050, 44_100, 48_000, 96_000, 192_000])
def test_any_input_rate_resamples_exactly(tmp_path, rate):
    path = synth.write(tmp_path / "tone.wav", synth.tone(440, 2.0, rate, 0.5), rate)
    y = audio.load(path)
    assert len(y) == 2 * SR
    assert dominant_frequency(y) == pytest.approx(440, abs=1)
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(y)) / SR)
    # HQ resampling: away from the edges, the sine is reproduced to about -60 dB
    np.testing.assert_allclose(y[1000:-1000], expected[1000:-1000], atol=2e-3)


@pytest.mark.parametrize("sample_format,codec", [("s16", "pcm_s16le"), ("s32", "pcm_s24le"),
                                                  ("flt", "pcm_f32le"), ("u8", "pcm_u8")])
def test_integer_and_float_samples_scale_to_unit_range(tmp_path, sample_format, codec):
    signal = synth.tone(500, 1.0, SR, 0.75)
    path = synth.write(tmp_path / "x.wav", signal, SR, codec=codec, sample_format=sample_format)
    y = audio.load(path, sr=SR)
    tolerance = 1 / 100 if sample_format == "u8" else 1e-4
    np.testing.assert_allclose(y, signal[0], atol=tolerance)


def test_stereo_downmix_is_mean_not_louder(tmp_path):
    left = synth.tone(300, 1.0, SR, 0.8)[0]
    right = np.zeros_like(left)
    path = synth.write(tmp_path / "lr.wav", np.stack([left, right]), SR)
    np.testing.assert_allclose(audio.load(path), left / 2, atol=1e-4)


def test_output_rate_is_a_parameter(tmp_path):
    path = synth.write(tmp_path / "t.flac", synth.tone(440, 1.0, 44_100), 44_100)
    assert len(audio.load(path, sr=22_050)) == 22_050
    with pytest.raises(ParameterError, match="sr must be between 8000 and 192000 Hz, got 4000"):
        audio.load(path, sr=4000)


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "m4a", "ogg", "opus"])
def test_excerpt_by_seeking_matches_slice_of_whole(tmp_path, ext):
    rate = synth.CODEC_RATES.get(ext, 44_100)
    signal = np.tile(synth.chord(12.0, rate), (2, 1))
    path = synth.write(tmp_path / f"c.{ext}", signal, rate)
    whole = audio.load(path)
    part = audio.load(path, start=5.0, duration=3.0)
    assert len(part) == pytest.approx(3 * SR, abs=2)
    i = 5 * SR
    # lossless: the same samples (resampler start-up aside); lossy: same waveform
    a, b = part[200:-200], whole[i + 200 : i + len(part) - 200]
    corr = np.corrcoef(a, b)[0, 1]
    assert corr > (0.999 if ext in ("wav", "flac") else 0.98)


def test_excerpt_past_end_is_a_clear_error(tmp_path):
    path = synth.write(tmp_path / "short.wav", synth.tone(440, 2.0, SR), SR)
    with pytest.raises(MediaError, match=r"short\.wav: no audio could be decoded after 10 s"):
        audio.load(path, start=10.0)


@pytest.mark.parametrize("kwargs,message", [({"start": -1.0}, "start must be >= 0 seconds, got -1.0"),
                                             ({"duration": 0.0}, "duration must be > 0 seconds or None, got 0.0")])
def test_bad_excerpt_parameters(tmp_path, kwargs, message):
    path = synth.write(tmp_path / "t.wav", synth.tone(440, 1.0, SR), SR)
    with pytest.raises(ParameterError, match=message):
        audio.load(path, **kwargs)


def test_stream_blocks_concatenate_to_load(tmp_path):
    path = synth.write(tmp_path / "c.mp3", np.tile(synth.chord(5.0, 44_100), (2, 1)), 44_100)
    blocks = list(audio.stream(path))
    assert len(blocks) > 2
    np.testing.assert_array_equal(np.concatenate(blocks), audio.load(path))


def test_decoding_twice_gives_identical_samples(tmp_path):
    path = synth.write(tmp_path / "c.m4a", np.tile(synth.chord(4.0, 44_100), (2, 1)), 44_100)
    np.testing.assert_array_equal(audio.load(path), audio.load(path))


def test_libsndfile_takes_over_when_ffmpeg_refuses_a_file(tmp_path, monkeypatch):
    """Some valid Ogg Vorbis files defeat FFmpeg's demuxer; libsndfile decodes them."""
    path = synth.write(tmp_path / "c.flac", np.tile(synth.chord(6.0, 44_100), (2, 1)), 44_100)
    by_ffmpeg = audio.load(path)
    excerpt_by_ffmpeg = audio.load(path, start=2.0, duration=1.5)

    def refuse(*args, **kwargs):
        raise audio.av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(audio.av, "open", refuse)
    np.testing.assert_allclose(audio.load(path), by_ffmpeg, atol=1e-4)
    np.testing.assert_allclose(audio.load(path, start=2.0, duration=1.5), excerpt_by_ffmpeg, atol=1e-3)
    assert audio.read_metadata(path).duration == pytest.approx(6.0, abs=0.01)
    text = tmp_path / "t.ogg"
    text.write_text("not audio")
    with pytest.raises(MediaError, match=r"t\.ogg: not a readable audio file \(Invalid data found"):
        audio.load(text)


class FailingContainer:
    """A real container whose decoding fails after ``fail_after`` seconds."""

    def __init__(self, container, fail_after):
        self.container, self.fail_after = container, fail_after
        self.duration = container.duration

    def decode(self, stream):
        for frame in self.container.decode(stream):
            if frame.time >= self.fail_after:
                raise audio.av.error.ArgumentError(22, "Invalid argument")
            yield frame


@pytest.mark.parametrize("fail_after,ok", [(4.99, True), (2.0, False)])
def test_a_decoding_error_after_the_last_sample_is_harmless(tmp_path, fail_after, ok):
    """Some Ogg files end with a packet FFmpeg rejects after all their audio decoded."""
    path = synth.write(tmp_path / "c.flac", synth.chord(5.0, 44_100), 44_100)
    container = audio.av.open(str(path))
    source = audio._FFmpegSource(path, FailingContainer(container, fail_after), container.streams.audio[0])
    try:
        if ok:
            seconds = sum(len(b) for _, b in source.blocks(0.0, None, seek=False)) / 44_100
            assert seconds == pytest.approx(4.99, abs=0.03)
        else:
            with pytest.raises(MediaError, match=r"c\.flac: corrupt audio data at 2\.[01] s \(Invalid argument\)"):
                list(source.blocks(0.0, None, seek=False))
    finally:
        container.close()


# --- bad input -------------------------------------------------------------------------

def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.mp3: empty file \(0 bytes\)"):
        audio.load(path)


def test_text_file_named_mp3(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("these are not the songs you are looking for\n" * 50)
    with pytest.raises(MediaError, match=r"notes\.mp3: "):
        audio.load(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.flac"
    path.write_bytes(np.random.default_rng(0).bytes(200_000))
    with pytest.raises(MediaError, match=r"noise\.flac: "):
        audio.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match=r"gone\.ogg: file not found"):
        audio.load(tmp_path / "gone.ogg")


def test_directory(tmp_path):
    with pytest.raises(MediaError, match="is a directory"):
        audio.load(tmp_path)


def test_unreadable_file(tmp_path, monkeypatch):
    path = synth.write(tmp_path / "locked.wav", synth.tone(440, 1.0, SR), SR)
    if os.geteuid() != 0:  # root reads anything; elsewhere use real permissions
        path.chmod(0)
    else:
        def deny(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(audio.av, "open", deny)
    with pytest.raises(MediaError, match=r"locked\.wav: permission denied"):
        audio.load(path)


def test_file_vanishing_while_streamed(tmp_path):
    """Deleting a file mid-stream loses nothing: the open handle keeps reading."""
    path = synth.write(tmp_path / "v.wav", synth.tone(440, 3.0, SR), SR)
    blocks = audio.stream(path)
    first = next(blocks)
    path.unlink()
    assert len(first) + sum(len(b) for b in blocks) == 3 * SR


@pytest.mark.parametrize("ext", ["wav", "aiff", "flac", "mp3"])
@pytest.mark.parametrize("keep", [0.5, 0.001])
def test_truncated_file(tmp_path, ext, keep):
    rate = 44_100
    full = synth.write(tmp_path / f"full.{ext}", np.tile(synth.chord(20.0, rate), (2, 1)), rate)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: max(64, int(len(data) * keep))])
    with pytest.raises(MediaError, match=rf"cut\.{ext}: (truncated|corrupt|not a readable)"):
        audio.load(cut)


@pytest.mark.parametrize("ext", ["flac", "mp3", "m4a", "ogg"])
def test_corrupt_bytes_inside_a_file(tmp_path, ext):
    rate = 44_100
    path = synth.write(tmp_path / f"bad.{ext}", np.tile(synth.chord(10.0, rate), (2, 1)), rate)
    data = bytearray(path.read_bytes())
    mid, n = len(data) // 2, len(data) // 10
    data[mid : mid + n] = np.random.default_rng(1).bytes(n)
    path.write_bytes(bytes(data))
    with pytest.raises(MediaError, match=rf"bad\.{ext}: (corrupt audio data|truncated)"):
        audio.load(path)


# --- metadata --------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["mp3", "flac", "m4a", "ogg", "opus"])
def test_metadata_round_trip(tmp_path, ext):
    rate = synth.CODEC_RATES.get(ext, 44_100)
    path = synth.write(tmp_path / f"tagged.{ext}", synth.tone(440, 2.0, rate, channels=2), rate)
    tagged = mutagen.File(path, easy=True)
    if tagged.tags is None:
        tagged.add_tags()
    tagged["artist"], tagged["title"], tagged["album"], tagged["genre"] = "Añá", "Tone", "Tests", "Ambient"
    tagged.save()
    meta = audio.read_metadata(path)
    assert (meta.artist, meta.title, meta.album, meta.genre) == ("Añá", "Tone", "Tests", "Ambient")
    assert meta.duration == pytest.approx(2.0, abs=0.1) and meta.channels == 2


def test_channels_come_from_the_container_where_mutagen_knows_no_format(tmp_path, monkeypatch):
    path = synth.write(tmp_path / "tone.ogg", synth.tone(440, 1.5, 44_100, channels=2), 44_100)
    monkeypatch.setattr(mutagen, "File", lambda *args, **kwargs: None)  # as for a format it does not read
    meta = audio.read_metadata(path)
    assert meta.channels == 2 and meta.duration == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3"])
def test_missing_tags_are_none(tmp_path, ext):
    path = synth.write(tmp_path / f"bare.{ext}", synth.tone(440, 1.5, 44_100, channels=2), 44_100)
    meta = audio.read_metadata(path)
    assert (meta.artist, meta.title, meta.album, meta.genre) == (None, None, None, None)
    assert meta.duration == pytest.approx(1.5, abs=0.1)


def test_metadata_of_a_non_audio_file(tmp_path):
    path = tmp_path / "readme.mp3"
    path.write_text("hello")
    with pytest.raises(MediaError, match=r"readme\.mp3"):
        audio.read_metadata(path)
