"""The port against outputs of the original TensorFlow MusiCNN (tests/data/musicnn-reference)."""

import numpy as np
import pytest
import torch

from conftest import DATA
from soundalike import analyze
from soundalike.models import load_model

REF = DATA / "musicnn-reference"
NAMES = ["Brick", "chaos-fog", "machine_wars", "supertux_forest", "synthetic"]
MODELS = {"msd-musicnn": "MSD_musicnn", "mtt-musicnn": "MTT_musicnn"}
CASES = [(name, model) for name in NAMES for model in MODELS]


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name) for name in MODELS}


def reference(name, model):
    return np.load(REF / f"{name}.{MODELS[model]}.npz")


@pytest.mark.parametrize("name,model", CASES)
def test_network_matches_original_from_stored_logmel(models, name, model):
    ref = reference(name, model)
    net = models[model]
    with torch.inference_mode():
        out = net.features_from_logmel(torch.from_numpy(ref["logmel"]))
        mean_pool, max_pool = net.pooled(torch.from_numpy(ref["logmel"]))
    np.testing.assert_allclose(torch.sigmoid(out.logits).numpy(), ref["taggram"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.embedding.numpy(), ref["penultimate"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(mean_pool.numpy(), ref["mean_pool"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(max_pool.numpy(), ref["max_pool"], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name,model", CASES)
def test_end_to_end_from_wav_matches_original(models, name, model):
    ref = reference(name, model)
    result = analyze(REF / f"{name}.wav", models[model])
    assert result.taggram.shape == ref["taggram"].shape
    np.testing.assert_allclose(result.taggram, ref["taggram"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(result.embeddings, ref["penultimate"], rtol=0, atol=1e-2)
    assert result.tags == tuple(models[model].labels)


@pytest.mark.parametrize("name", NAMES)
def test_front_end_matches_librosa_logmel(models, name):
    """The waveform front end reproduces the stored log-mel patches (librosa's)."""
    from soundalike import audio, iter_windows

    net = models["msd-musicnn"]
    windows = np.stack(list(iter_windows([audio.load(REF / f"{name}.wav")], net.window)))
    with torch.inference_mode():
        logmel = net.logmel(torch.from_numpy(windows)).numpy()
    expected = reference(name, "msd-musicnn")["logmel"]
    assert logmel.shape == expected.shape
    # float16 rounding of the mel power can flip one step: about 4e-4 after the log
    np.testing.assert_allclose(logmel, expected, rtol=0, atol=1e-3)
    assert np.abs(logmel - expected).mean() < 1e-5


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "plain-conv"])
def test_eval_shortcut_equals_plain_block(models, onednn, monkeypatch):
    """The max-first shortcut of the timbral/temporal blocks is exact in eval mode,
    through oneDNN tensors and max pooling or through a plain convolution."""
    net = models["msd-musicnn"]
    x = torch.randn(2, 1, 187, 96, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", onednn)
    with torch.inference_mode():
        for block in [*net.frontend.timbral, *net.frontend.temporal]:
            torch.testing.assert_close(block.max_over_frequency(x), block(x).amax(dim=3), rtol=0, atol=0)


def test_shipped_weights_carry_licence_and_source():
    from safetensors import safe_open

    from soundalike.models import WEIGHTS_DIR

    for name, tf_name in MODELS.items():
        with safe_open(str(WEIGHTS_DIR / f"{name}.safetensors"), "np") as f:
            meta = f.metadata()
        assert meta["license"] == "ISC"
        assert tf_name in meta["source"]
    assert "Permission to use, copy, modify" in (WEIGHTS_DIR / "LICENSE").read_text()
