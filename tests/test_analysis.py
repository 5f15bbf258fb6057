"""Windowing and analysis invariants: chunked equals whole, determinism, patch geometry."""

import numpy as np
import pytest

import synth
from soundalike import ParameterError, analyze, iter_windows
from soundalike.analysis import analyze_blocks
from soundalike.models import WindowSpec

SPEC = WindowSpec(sample_rate=16_000, length=48_128, hop=47_872, pad=256)


def expected_count(n: int, spec: WindowSpec = SPEC) -> int:
    """Whole patches of a centred spectrogram: frames = 1 + n // 256, 187 per patch."""
    frames = 1 + n // 256
    return max(1, frames // 187)


@pytest.mark.parametrize("n", [1, 1000, 47_871, 47_872 - 256, 47_872 - 257, 47_872, 100_000,
                               3 * 47_872 - 256, 3 * 47_872 - 257, 10 * 47_872 + 5])
def test_window_count_matches_centred_spectrogram_patches(n):
    y = np.ones(n, np.float32)
    assert len(list(iter_windows([y], SPEC))) == expected_count(n)


def test_windows_are_slices_of_the_padded_signal():
    y = np.arange(200_000, dtype=np.float32)
    padded = np.concatenate([np.zeros(256, np.float32), y, np.zeros(256, np.float32)])
    for k, window in enumerate(iter_windows([y], SPEC)):
        np.testing.assert_array_equal(window, padded[k * SPEC.hop : k * SPEC.hop + SPEC.length])


@pytest.mark.parametrize("split_seed", [0, 1, 2])
def test_chunked_equals_whole(split_seed):
    y = np.random.default_rng(7).standard_normal(500_000).astype(np.float32)
    rng = np.random.default_rng(split_seed)
    cuts = np.sort(rng.choice(len(y), size=40, replace=False))
    blocks = np.split(y, cuts)
    whole = list(iter_windows([y], SPEC))
    chunked = list(iter_windows(blocks, SPEC))
    assert len(whole) == len(chunked) == expected_count(len(y))
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a, b)


def test_short_signal_repeats_to_fill_one_window():
    """MusiCNN was trained with short clips repeated ("repeat-pad"), not zero-padded."""
    y = np.arange(1, 1001, dtype=np.float32)
    (window,) = iter_windows([y], SPEC)
    assert window.shape == (SPEC.length,)
    assert not window[:256].any()  # the STFT context before the signal stays silent
    content = window[256:]
    np.testing.assert_array_equal(content[:1000], y)
    np.testing.assert_array_equal(content, np.tile(y, len(content) // 1000 + 1)[: len(content)])
    # however it arrives in blocks
    (chunked,) = iter_windows([y[:300], y[300:301], y[301:]], SPEC)
    np.testing.assert_array_equal(chunked, window)


def test_analysis_shapes_and_patch_times(msd_model):
    y = synth.chord(10.0, 16_000)[0]
    result = analyze(y, msd_model)
    assert result.taggram.shape == (3, 50) and result.embeddings.shape == (3, 200)
    np.testing.assert_allclose(result.starts, [0, 2.992, 5.984])
    assert ((result.taggram >= 0) & (result.taggram <= 1)).all()
    assert not result.padded
    assert result.top_tags(3)[0][1] == pytest.approx(result.tag_probabilities.max())


def test_short_input_is_padded_and_says_so(msd_model):
    result = analyze(synth.tone(440, 1.0, 16_000)[0], msd_model)
    assert result.padded and result.taggram.shape == (1, 50)


def test_same_input_same_output(msd_model):
    y = synth.chord(7.0, 16_000, seed=3)[0]
    a, b = analyze(y, msd_model), analyze(y, msd_model)
    np.testing.assert_array_equal(a.taggram, b.taggram)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)


def test_batch_size_does_not_change_results(msd_model):
    y = synth.chord(16.0, 16_000, seed=4)[0]
    one = analyze(y, msd_model, batch_size=1)
    many = analyze(y, msd_model, batch_size=7)
    np.testing.assert_allclose(one.taggram, many.taggram, atol=1e-6)
    np.testing.assert_allclose(one.embeddings, many.embeddings, atol=1e-5)


def test_streamed_file_equals_in_memory_waveform(tmp_path, msd_model):
    from soundalike import audio

    path = synth.write(tmp_path / "c.flac", np.tile(synth.chord(8.0, 44_100), (2, 1)), 44_100)
    from_file = analyze(path, msd_model)
    from_array = analyze(audio.load(path), msd_model)
    np.testing.assert_array_equal(from_file.taggram, from_array.taggram)


def test_excerpt_patch_times_start_at_offset(tmp_path, msd_model):
    path = synth.write(tmp_path / "c.wav", synth.chord(20.0, 16_000), 16_000)
    result = analyze(path, msd_model, start=6.0, duration=7.0)
    np.testing.assert_allclose(result.starts, [6.0, 8.992])


def test_random_model_is_seeded_and_differs_from_trained():
    from soundalike.models import load_model

    y = synth.chord(4.0, 16_000)[0]
    a = analyze(y, load_model("random-musicnn"))
    b = analyze(y, load_model("random-musicnn"))
    trained = analyze(y, "msd-musicnn")
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert not np.allclose(a.taggram, trained.taggram, atol=1e-2)


@pytest.mark.parametrize("bad,message", [(np.zeros((2, 100), np.float32), r"must be 1-D \(mono\), got shape \(2, 100\)"),
                                         (np.zeros(0, np.float32), "waveform is empty")])
def test_bad_waveforms(msd_model, bad, message):
    with pytest.raises(ParameterError, match=message):
        analyze(bad, msd_model)


def test_bad_batch_size(msd_model):
    with pytest.raises(ParameterError, match="batch_size must be >= 1, got 0"):
        analyze_blocks([np.zeros(50_000, np.float32)], msd_model, batch_size=0)


def test_unknown_model_name():
    from soundalike import ModelError, load_model

    with pytest.raises(ModelError, match="unknown model 'nope'; known: .*msd-musicnn"):
        load_model("nope")


def test_tfidf_gives_no_weight_to_patches_found_in_every_track():
    from soundalike.analysis import tfidf_vectors

    rng = np.random.default_rng(0)
    common = rng.standard_normal(16)
    uniques = rng.standard_normal((4, 16))
    # each track: the common patch twice, its own patch three times
    tracks = [np.stack([common, common, u, u, u]) for u in uniques]
    vectors = tfidf_vectors(tracks, epsilon=1e-3)
    for u, v in zip(uniques, vectors):
        unit = u / np.linalg.norm(u)
        # tf 3 x idf log(4) for the unique patch, idf 0 for the common one
        np.testing.assert_allclose(v, 3 * 3 * np.log(4) * unit, rtol=1e-5)


def test_tfidf_is_deterministic_and_falls_back_to_mean():
    from soundalike.analysis import tfidf_vectors

    same = np.ones((3, 8), np.float32)
    a = tfidf_vectors([same, same], epsilon=0.01)
    np.testing.assert_allclose(a[0], same[0] / np.sqrt(8), rtol=1e-6)  # all idf 0: mean of unit patches
    tracks = [np.random.default_rng(i).standard_normal((6, 8)) for i in range(5)]
    np.testing.assert_array_equal(tfidf_vectors(tracks)[2], tfidf_vectors(tracks)[2])
