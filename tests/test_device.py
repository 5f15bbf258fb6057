"""Where the network runs (``--device``): clear refusals without the device, and on a
machine with a CUDA GPU the same vectors there as on the CPU."""

import numpy as np
import pytest
import torch

from soundalike import analysis
from soundalike.cli import main
from soundalike.errors import ParameterError
from soundalike.library import Library
from soundalike.library.ray_indexer import _gpus_per_actor
from soundalike.models import DEFAULT_LIBRARY_MODEL, load_model, torch_device
from songs import make_music

CUDA = torch.cuda.is_available()


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_before_the_library_is_made(tmp_path, capsys):
    library = tmp_path / "lib.sqlite"
    assert main(["index", str(tmp_path), "--library", str(library), "--device", "cuda"]) == 2
    assert "device 'cuda': PyTorch sees no CUDA GPU on this machine" in capsys.readouterr().err
    assert not library.exists()


@pytest.mark.parametrize("name, says", [("tpu", "unknown device 'tpu'"), ("xla", "unknown device 'xla'"),
                                        ("cuda:99", "cuda:99")])
def test_devices_it_cannot_run_on_are_named(name, says):
    with pytest.raises(ParameterError, match=says):
        torch_device(name)


def test_the_cpu_is_always_there():
    assert load_model(DEFAULT_LIBRARY_MODEL, "cpu").device == torch.device("cpu")


@pytest.mark.parametrize("gpus, workers, share", [(1, 1, 1.0), (1, 4, 0.25), (2, 2, 1.0), (8, 2, 1.0), (3, 4, 0.75)])
def test_ray_actors_share_the_clusters_gpus_out(gpus, workers, share):
    assert _gpus_per_actor("cuda", workers, gpus, "auto") == share
    assert _gpus_per_actor("cpu", workers, gpus, "auto") == 0


@pytest.mark.parametrize("device, says", [("cuda", "the Ray cluster at auto has no GPU"),
                                          ("cuda:1", "Ray gives each actor its GPU"), ("mps", "cpu or cuda")])
def test_ray_refuses_what_its_actors_cannot_have(device, says):
    with pytest.raises(ParameterError, match=says):
        _gpus_per_actor(device, 2, 0, "auto")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_the_gpu_gives_the_cpus_analysis(tmp_path):
    """One track analysed on both, then a folder indexed with --device cuda and without."""
    music = make_music(tmp_path / "music")
    track = sorted(music.rglob("*.mp3"))[0]
    on_cpu = analysis.analyse_track(track, load_model(DEFAULT_LIBRARY_MODEL, "cpu"))
    on_gpu = analysis.analyse_track(track, load_model(DEFAULT_LIBRARY_MODEL, "cuda"))
    np.testing.assert_allclose(on_gpu.embeddings, on_cpu.embeddings, atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(on_gpu.taggram, on_cpu.taggram, atol=1e-3)
    for device in ("cpu", "cuda"):
        assert main(["index", str(music), "--library", str(tmp_path / f"{device}.sqlite"), "--workers", "2",
                     "--device", device]) == 0
    with Library(tmp_path / "cuda.sqlite") as gpu, Library(tmp_path / "cpu.sqlite") as cpu:
        for track in gpu.catalogue.tracks():
            other = cpu.catalogue.track_by_path(track.path)
            np.testing.assert_allclose(gpu.catalogue.arrays("vector", [track.id])[1],
                                       cpu.catalogue.arrays("vector", [other.id])[1], atol=2e-3)
