"""The library map's projection: clusters kept apart, the same map for the same library,
small libraries, and umap-learn imported only when a map is drawn."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from soundalike.audio import TrackMetadata
from soundalike.library import Library
from soundalike.library.catalogue import ModelDescription, TrackRecord
from soundalike.server.projection import UMAP_MAX_POINTS, UMAP_MIN_POINTS, layout, library_map, method_for

DIM, CLUSTERS, PER_CLUSTER = 32, 3, 30  # three clusters: a triangle, that PCA keeps too
TAGS = ("calm", "loud", "sad")
KEYS = {"ids", "x", "y", "tag", "tags", "labels", "method"}


def clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CLUSTERS x PER_CLUSTER unit vectors around orthogonal directions (n, DIM), and their cluster (n,)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLUSTERS), PER_CLUSTER)
    x = np.eye(DIM)[labels] + 0.15 * rng.standard_normal((len(labels), DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def agreement(xy: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each point's k nearest map neighbours in its cluster."""
    _, nearest = NearestNeighbors(n_neighbors=k + 1).fit(xy).kneighbors(xy)
    return float((labels[nearest[:, 1:]] == labels[:, None]).mean())


def library_of(tmp_path, vectors: np.ndarray) -> Library:
    lib = Library(tmp_path / "map.sqlite", create=True)
    lib.catalogue.bind_model(ModelDescription("test", TAGS, (DIM,), (1.0,)))
    for i, vector in enumerate(vectors):
        tags = np.roll(np.array([0.9, 0.2, 0.1], np.float32), i)  # track i's strongest tag: i % 3
        meta = TrackMetadata(artist=f"Artist {i}", title=f"Song {i}", duration=60.0)
        lib.catalogue.put(TrackRecord(f"/music/song{i}.flac", 1, 1, meta, 0, vector, tags, vector[None, :],
                                      np.zeros(1, np.float32)))
    return lib


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_the_map_keeps_clusters_apart_and_is_the_same_every_time(method):
    vectors, labels = clusters()
    xy = layout(vectors, method)
    assert xy.shape == (len(vectors), 2) and xy.dtype == np.float64 and np.isfinite(xy).all()
    assert agreement(xy, labels) > 0.95
    np.testing.assert_array_equal(layout(vectors.copy(), method), xy)


def test_umap_keeps_apart_what_pca_cannot():
    """Twelve clusters in twelve orthogonal directions: two PCA axes cannot separate them, UMAP does."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(12), 15)
    vectors = np.eye(DIM)[labels] + 0.1 * rng.standard_normal((len(labels), DIM))
    assert agreement(layout(vectors, "pca"), labels) < 0.7
    assert agreement(layout(vectors, "umap"), labels) > 0.95


def test_the_method_follows_the_library_size():
    assert [method_for(n) for n in (0, 3, UMAP_MIN_POINTS - 1, UMAP_MIN_POINTS, UMAP_MAX_POINTS,
                                    UMAP_MAX_POINTS + 1)] == ["pca", "pca", "pca", "umap", "umap", "umap"]


def test_past_the_landmarks_every_track_sits_beside_its_own_cluster():
    """UMAP on 30 of 90 tracks, the other 60 placed: clusters still apart, landmarks where
    UMAP alone puts them, the same map every time."""
    vectors, labels = clusters()
    xy = layout(vectors, "umap", landmarks=30)
    assert agreement(xy, labels) > 0.95
    chosen = np.sort(np.random.default_rng(0).choice(len(vectors), 30, replace=False))
    np.testing.assert_array_equal(xy[chosen], layout(vectors[chosen], "umap"))
    np.testing.assert_array_equal(layout(vectors.copy(), "umap", landmarks=30), xy)


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="map method must be 'pca' or 'umap', got 'mds'"):
        layout(np.eye(3), "mds")


def test_a_library_map_has_a_point_per_track(tmp_path):
    vectors, _ = clusters()
    with library_of(tmp_path, vectors) as lib:
        result = library_map(lib, lib.catalogue.generation)
        ids = lib.catalogue.arrays("vector")[0].tolist()
    assert set(result) == KEYS and result["method"] == "umap"
    assert result["ids"] == ids and len(result["x"]) == len(result["y"]) == len(ids)
    assert result["tags"] == list(TAGS) and result["tag"] == [i % 3 for i in range(len(ids))]
    assert result["labels"][:2] == ["Artist 0 - Song 0", "Artist 1 - Song 1"]


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_a_small_library_has_a_map(tmp_path, count):
    vectors, _ = clusters()
    with library_of(tmp_path, vectors[:: PER_CLUSTER][:count]) as lib:
        result = library_map(lib, lib.catalogue.generation)
    assert set(result) == KEYS and result["method"] == "pca"
    assert len(result["ids"]) == len(result["x"]) == len(result["y"]) == len(result["labels"]) == count
    points = set(zip(result["x"], result["y"]))
    assert len(points) == count  # no two tracks on the same spot
    if count == 1:
        assert points == {(0.0, 0.0)}


def test_umap_is_imported_only_when_a_map_is_drawn():
    """Starting the server or the command line does not pay for umap-learn."""
    code = ("import sys, soundalike.cli, soundalike.server, soundalike.server.projection; "
            "print(sorted(m for m in ('umap', 'pynndescent') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
