"""Ideas for better similarity, tried on both labelled corpora: what worked and what did not.

    python bench/bench_ideas.py [--gtzan DIR] [--soundtracks DIR] [--cache DIR] [--wheel musicnn-0.1.0-py3-none-any.whl]

Every idea starts from the same per-patch outputs of the shipped networks (penultimate
layer, the batch-normalised pooled mid-end features that feed it, the mid-end's mean
over time, the tag probabilities), extracted once per corpus into ``--cache``:
gtzan-dev's clips (shorter than a patch) repeated to fill one patch, plus four
circular shifts of it for test-time augmentation; the soundtracks at the library's
default 10 spread patches. Each idea is scored like ``bench_quality.py`` (leave-one-out
P@5 and mAP; items of the query's group never count). With ``--wheel`` (``pip download
--no-deps musicnn==0.1.0``), the VGG networks published beside MusiCNN are ported on the
fly from their TensorFlow checkpoints and tried too.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from soundalike import analysis, audio
from soundalike.analysis import Space, library_centre, normalize
from soundalike.evaluation import collect
from soundalike.evaluation.metrics import retrieval
from soundalike.models import load_model

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("emb", "pbn", "mid", "probs")


# --- features ----------------------------------------------------------------------------

def musicnn_layers(model, windows: np.ndarray) -> dict[str, np.ndarray]:
    """Per window: penultimate (200), pooled mid-end after batch norm (1506), mid-end mean (753), tags (50)."""
    with torch.inference_mode():
        mid = model.midend(model.frontend(model.logmel(torch.from_numpy(windows))))
        pooled = model.backend.pool_bn(torch.stack([mid.amax(dim=2), mid.mean(dim=2)], dim=2).flatten(1))
        out = model.features(torch.from_numpy(windows))
        return {"emb": out.embedding.numpy(), "pbn": pooled.numpy(), "mid": mid.mean(dim=2).numpy(),
                "probs": model.probabilities(out.logits).numpy()}


class VGG(torch.nn.Module):
    """musicnn 0.1.0's VGG: five 3x3 conv (ReLU, batch norm, max pool) layers of 128 filters; the
    embedding is the flattened last pooling (2 x 1 x 128, TensorFlow's order)."""

    POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

    def __init__(self, logmel):
        super().__init__()
        self.logmel = logmel
        self.input_bn = torch.nn.BatchNorm2d(1, eps=1e-3)
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(1 if i == 0 else 128, 128, 3, padding=1) for i in range(5))
        self.bns = torch.nn.ModuleList(torch.nn.BatchNorm2d(128, eps=1e-3) for _ in range(5))
        self.output = torch.nn.Linear(256, 50)

    def layers(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            x = self.input_bn(self.logmel(torch.from_numpy(windows)).unsqueeze(1))
            for conv, bn, (kernel, stride) in zip(self.convs, self.bns, self.POOLS):
                x = F.max_pool2d(bn(F.relu(conv(x))), kernel, stride)
            emb = x.permute(0, 2, 3, 1).flatten(1)
            return {"emb": emb.numpy(), "probs": torch.sigmoid(self.output(emb)).numpy()}


def load_vgg(wheel: Path, name: str, logmel) -> VGG:
    sys.path.insert(0, str(ROOT / "tools"))
    from convert_musicnn import read_checkpoint

    with zipfile.ZipFile(wheel) as w:
        t = read_checkpoint(w.read(f"musicnn/{name}/.index"), w.read(f"musicnn/{name}/.data-00000-of-00001"))
    bn = lambda i: "batch_normalization" + (f"_{i}" if i else "")  # noqa: E731
    state = {"input_bn.weight": t[f"{bn(0)}/gamma"], "input_bn.bias": t[f"{bn(0)}/beta"],
             "input_bn.running_mean": t[f"{bn(0)}/moving_mean"], "input_bn.running_var": t[f"{bn(0)}/moving_variance"],
             "output.weight": t["dense/kernel"].T, "output.bias": t["dense/bias"]}
    for i in range(5):
        state[f"convs.{i}.weight"] = t[f"{i + 1}CNN/kernel"].transpose(3, 2, 0, 1)
        state[f"convs.{i}.bias"] = t[f"{i + 1}CNN/bias"]
        for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                             ("running_var", "moving_variance")):
            state[f"bns.{i}.{ours}"] = t[f"{bn(i + 1)}/{theirs}"]
    model = VGG(logmel)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in state.items()},
                          strict=False)
    return model.eval()


def windows_of(path: str, window, kind: str) -> np.ndarray:
    """The windows a corpus item is analysed in: 'library' (as indexing does), 'shifts'
    (a short clip repeated, at four circular shifts) or 'zeros' (a short clip followed by
    silence, as soundalike did before 0.2)."""
    if kind == "library":
        starts = analysis.excerpt_starts(audio.read_metadata(path).duration, 10, window)
        if starts is None:  # too short for 10 patches: every patch, as indexing does
            return np.stack(list(analysis.iter_windows([audio.load(path, sr=window.sample_rate)], window)))
        clips = audio.load_excerpts(path, starts=list(starts), duration=window.length / window.sample_rate,
                                    sr=window.sample_rate)
        return np.stack([np.pad(c[: window.length], (0, window.length - len(c[: window.length]))) for c in clips])
    y = audio.load(path, sr=window.sample_rate)
    if kind == "zeros":
        return np.pad(y, (window.pad, max(0, window.length - window.pad - len(y))))[None, : window.length]
    tiled = np.tile(y, window.length // len(y) + 2)
    return np.stack([tiled[int(s * len(y)):][: window.length] for s in (0, 0.25, 0.5, 0.75)])


def extract(items, kind: str, networks: dict, cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """{network: {layer: (n_items, dim) mean over the item's windows}}, cached."""
    out = {}
    for name, layers in networks.items():
        file = cache / f"{cache.name}.{name}.{kind}.npz"
        if not file.exists():
            window = load_model("msd-musicnn").window
            per_item = []
            for item in items:
                values = layers(windows_of(item.path, window, kind).astype(np.float32))
                per_item.append({k: v.mean(axis=0) for k, v in values.items()})
            np.savez(file, **{k: np.stack([p[k] for p in per_item]) for k in per_item[0]})
        out[name] = dict(np.load(file))
    return out


# --- scoring -----------------------------------------------------------------------------

def score(vectors: np.ndarray, items) -> tuple[float, float]:
    labels = np.array([next(iter(i.labels)) for i in items])
    groups = np.array([i.group for i in items])
    r = retrieval(vectors, labels, groups, ks=(5,))
    return r.precision_at[5], r.mean_average_precision


def centre_of(x: np.ndarray) -> np.ndarray:
    """The centre a library of these vectors would have."""
    return library_centre(x.astype(np.float64).sum(axis=0), len(x))


def centred(x: np.ndarray, centre=None) -> np.ndarray:
    return Space((x.shape[1],), (1.0,), centre_of(x) if centre is None else centre).project(x)


def fused(parts, weights) -> np.ndarray:
    return normalize(np.concatenate([w * centred(p) for p, w in zip(parts, weights)], axis=1))


def zscored(x: np.ndarray) -> np.ndarray:
    return normalize((x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6))


def whitened(x: np.ndarray, power: float = 0.5) -> np.ndarray:
    xc = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    return normalize(xc @ vt.T / (s + 1e-9) ** power)


def reranked(u: np.ndarray, how: str) -> np.ndarray:
    """Similarity matrices that reduce hubs (CSLS, mutual proximity) or expand queries (DBA)."""
    sims = u @ u.T
    np.fill_diagonal(sims, -np.inf)
    if how == "csls":  # Conneau et al. 2018: penalise tracks close to everything
        r = np.sort(sims, axis=1)[:, ::-1][:, :10].mean(axis=1)
        return 2 * (u @ u.T) - r[None, :] - r[:, None]
    if how == "mp":  # mutual proximity (Schnitzer et al. 2012), Gaussian
        from scipy.stats import norm

        s = u @ u.T
        mu, sd = s.mean(axis=1), s.std(axis=1)
        return norm.cdf(s, mu[:, None], sd[:, None]) * norm.cdf(s, mu[None, :], sd[None, :])
    if how == "dba":  # database-side augmentation: each track averaged with its 3 nearest
        nn = np.argsort(-sims, axis=1)[:, :3]
        w = normalize(u + u[nn].sum(axis=1))
        return w @ w.T
    raise ValueError(how)


def score_matrix(sims: np.ndarray, items) -> tuple[float, float]:
    """P@5 and mAP from a similarity matrix (every item its own group)."""
    labels = np.array([next(iter(i.labels)) for i in items])
    sims = sims.copy()
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1)[:, :-1]
    rel = labels[order] == labels[:, None]
    hits = np.cumsum(rel, axis=1)
    ap = (hits / np.arange(1, rel.shape[1] + 1) * rel).sum(axis=1) / np.maximum(rel.sum(axis=1), 1)
    return float(rel[:, :5].mean()), float(ap.mean())


def lda_rows(items, x: np.ndarray) -> list[tuple[str, float, float]]:
    """Metric learning from half the labels (GTZAN numbers 10-29 tagged, 30-50 untagged),
    scored on the untagged half only: GTZAN is ordered by artist, so the halves share few."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    number = np.array([int(Path(i.path).name.split(".")[1]) for i in items])
    tagged, untagged = np.flatnonzero(number < 30), np.flatnonzero(number >= 30)
    labels = np.array([next(iter(i.labels)) for i in items])
    sub = [items[i] for i in untagged]
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(x[tagged], labels[tagged])
    z = normalize(lda.transform(x))
    return [("untagged half: the default's vectors", *score(x[untagged], sub)),
            ("untagged half: LDA learnt on the tagged half", *score(z[untagged], sub)),
            ("untagged half: default + LDA side by side",
             *score(normalize(np.concatenate([x, 0.5 * z], 1))[untagged], sub))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtzan", type=Path, default=ROOT.parent / "shared" / "data" / "gtzan-dev")
    parser.add_argument("--soundtracks", type=Path, default=Path("/work/data/soundtracks"))
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "out" / "ideas")
    parser.add_argument("--wheel", type=Path, help="musicnn-0.1.0-py3-none-any.whl, to try its VGG networks")
    args = parser.parse_args()
    torch.set_num_threads(2)
    msd, mtt = load_model("msd-musicnn"), load_model("mtt-musicnn")
    networks = {"msd": lambda w: musicnn_layers(msd, w), "mtt": lambda w: musicnn_layers(mtt, w)}
    if args.wheel:
        for name in ("MSD_vgg", "MTT_vgg"):
            vgg = load_vgg(args.wheel, name, msd.logmel)
            networks[name.lower()] = vgg.layers
    corpora = {"gtzan-dev": collect(args.gtzan, "filename"), "soundtracks": collect(args.soundtracks, "folder")}
    feats = {}
    for name, items in corpora.items():
        cache = args.cache / name
        cache.mkdir(parents=True, exist_ok=True)
        feats[name] = extract(items, "library", networks, cache)
        if name == "gtzan-dev":
            for kind in ("shifts", "zeros"):
                feats[f"gtzan-dev {kind}"] = extract(items, kind, {k: networks[k] for k in ("msd", "mtt")}, cache)
    rows: dict[str, dict[str, tuple[float, float]]] = {}

    def add(idea: str, corpus: str, value: tuple[float, float]) -> None:
        rows.setdefault(idea, {})[corpus] = value

    for corpus, items in corpora.items():
        f = feats[corpus]
        m, t = f["msd"], f["mtt"]
        default = fused([m["emb"], t["emb"]], (0.6, 0.4))
        add("**the default** (MSD + MTT penultimate, centred, 0.6 / 0.4)", corpus, score(default, items))
        add("MSD penultimate alone, centred", corpus, score(centred(m["emb"]), items))
        add("MTT penultimate alone, centred", corpus, score(centred(t["emb"]), items))
        add("+ MSD pooled mid-end (1506-d) as a third block", corpus,
            score(fused([m["emb"], t["emb"], m["pbn"]], (0.6, 0.4, 0.5)), items))
        add("MSD mid-end mean over time (753-d), z-scored", corpus, score(zscored(m["mid"]), items))
        add("MSD + MTT tag probabilities as vectors", corpus, score(fused([m["probs"], t["probs"]], (0.6, 0.4)), items))
        add("default, PCA-whitened (power 0.5)", corpus, score(whitened(default), items))
        for how, label in (("csls", "hub reduction: CSLS (k = 10)"), ("mp", "hub reduction: mutual proximity"),
                           ("dba", "query expansion: database-side augmentation (k = 3)")):
            add(label, corpus, score_matrix(reranked(default, how), items))
        other = "soundtracks" if corpus == "gtzan-dev" else "gtzan-dev"
        om, ot = feats[other]["msd"]["emb"], feats[other]["mtt"]["emb"]
        cross = normalize(np.concatenate([0.6 * centred(m["emb"], centre_of(om)),
                                          0.4 * centred(t["emb"], centre_of(ot))], 1))
        add("default centred on the *other* corpus's mean", corpus, score(cross, items))
        for w in (0.5, 0.65):
            add(f"weights {w:g} / {1 - w:g} (fitted on {'soundtracks' if w == 0.5 else 'gtzan-dev'})", corpus,
                score(fused([m["emb"], t["emb"]], (w, 1 - w)), items))
        if "msd_vgg" in f:
            add("MSD-VGG alone, centred", corpus, score(centred(f["msd_vgg"]["emb"]), items))
            add("MTT-VGG alone, centred", corpus, score(centred(f["mtt_vgg"]["emb"]), items))
            add("MSD + MTT MusiCNN + MSD-VGG, centred, equal", corpus,
                score(fused([m["emb"], t["emb"], f["msd_vgg"]["emb"]], (1, 1, 1)), items))
            add("all four networks, centred, equal", corpus,
                score(fused([m["emb"], t["emb"], f["msd_vgg"]["emb"], f["mtt_vgg"]["emb"]], (1, 1, 1, 1)), items))
    for kind, idea in (("zeros", "short clips followed by silence instead of repeated (before 0.2)"),
                       ("shifts", "test-time augmentation: 4 circular shifts of a short clip")):
        f = feats[f"gtzan-dev {kind}"]
        add(idea, "gtzan-dev", score(fused([f["msd"]["emb"], f["mtt"]["emb"]], (0.6, 0.4)), corpora["gtzan-dev"]))
    gtzan_default = fused([feats["gtzan-dev"]["msd"]["emb"], feats["gtzan-dev"]["mtt"]["emb"]], (0.6, 0.4))
    for idea, p5, ap in lda_rows(corpora["gtzan-dev"], gtzan_default):
        add(idea, "gtzan-dev", (p5, ap))

    print("| idea | gtzan-dev P@5 | gtzan-dev mAP | soundtracks P@5 | soundtracks mAP |")
    print("|---|---|---|---|---|")
    for idea, values in rows.items():
        cells = [f"{values[c][k]:.3f}" if c in values else "–" for c in ("gtzan-dev", "soundtracks") for k in (0, 1)]
        print(f"| {idea} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
