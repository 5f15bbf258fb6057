"""``soundalike train``: one seeded, resumable training loop for every model family.

A run directory holds ``model.safetensors`` (the best model so far: what ``analyze``
and ``index`` load), ``checkpoint.safetensors`` (model, optimizer, step, best metric,
random states, history and the full config, after every epoch: a killed run resumes
from it), and at the end ``report.md``/``report.json`` with plots.

Tasks: ``classes`` (one label per track: cross-entropy, accuracy), ``tags`` (several:
binary cross-entropy, macro ROC-AUC) and ``vector`` (Track2Vec regression: cosine
loss, mean cosine). Training takes random crops from the decoded cache; validation and
test average each track's predictions over evenly spaced crops.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import datasets
from ..analysis import normalize
from ..errors import ParameterError
from ..evaluation.metrics import tag_auc
from ..models import AudioModel, load_model
from ..models import trained as model_files
from ..models.networks import Probe
from ..units import human_size
from . import track2vec
from .cache import WaveCache
from .config import TrainConfig, default_cache

log = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.safetensors"
VECTORS_FILE = "track2vec.npz"
PROBE_POSITIONS = 16  # frozen-embedder vectors computed once per track, at evenly spaced crops


@dataclasses.dataclass
class Task:
    """The dataset seen by the loop: tracks of each split and their targets."""

    kind: str  # classes | tags | vector
    labels: tuple[str, ...]
    splits: dict[str, list[str]]  # split -> track keys
    targets: dict[str, np.ndarray]  # key -> class index (), 0/1 tags (L,) or unit vector (D,)

    def stack(self, keys) -> np.ndarray:
        return np.stack([self.targets[k] for k in keys])


def _task(config: TrainConfig, dataset: datasets.Dataset, run_dir: Path) -> Task:
    splits = {s: [t.key for t in tracks] for s, tracks in dataset.splits(seed=config.seed).items()}
    if dataset.kind == "playlists":
        if config.model != "track2vec":
            raise ParameterError("playlists data trains the track2vec model only")
        path = run_dir / VECTORS_FILE
        if not path.exists():
            track2vec.save(track2vec.fit(dataset.playlists, dim=config.vector_dim, seed=config.seed), path)
        return Task("vector", (), splits, track2vec.load(path))
    if config.model == "track2vec":
        raise ParameterError("track2vec learns from playlists data (playlists:PATH)")
    index = {label: i for i, label in enumerate(dataset.vocabulary)}
    if dataset.multilabel:
        targets = {t.key: np.isin(np.arange(len(index)), [index[x] for x in t.labels]).astype(np.float32)
                   for t in dataset.tracks.values()}
        return Task("tags", dataset.vocabulary, splits, targets)
    targets = {t.key: np.array(index[t.labels[0]]) for t in dataset.tracks.values() if t.labels}
    return Task("classes", dataset.vocabulary, {s: [k for k in keys if k in targets] for s, keys in splits.items()},
                targets)


def model_config(config: TrainConfig, task: Task) -> model_files.ModelConfig:
    architecture = {"track2vec": config.backbone}.get(config.model, config.model)
    params = dict(config.params)
    if config.model == "probe":
        params["embedder"] = config.embedder
    return model_files.ModelConfig(architecture, task.labels, task.kind, params,
                                   config.vector_dim if task.kind == "vector" else 0)


def build_model(config: TrainConfig, task: Task, *, pretrained: bool = True) -> AudioModel:
    """The network before training, seeded; a musicnn ``--init`` copies the shipped weights
    (all but the output layer, unless the labels are the shipped model's own)."""
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = model_files.build(model_config(config, task))
    if pretrained and config.init:
        source = load_model(config.init)
        keep_head = tuple(source.labels) == tuple(model.labels)
        state = {k: v for k, v in source.state_dict().items() if keep_head or not k.startswith("backend.output.")}
        model.load_state_dict(state, strict=False)
    return model


# --- inputs: waveform crops, or a probe's frozen vectors computed once ------------------

class _Inputs:
    """What the trainable part of a model reads, per track."""

    def __init__(self, model: AudioModel, cache: WaveCache, config: TrainConfig, device: torch.device):
        self.model, self.cache, self.config, self.device = model, cache, config, device
        self.length = model.window.length
        self.frozen: dict[str, torch.Tensor] = {}

    def _starts(self, key: str, n: int) -> np.ndarray:
        """Up to ``n`` evenly spaced crop starts; fewer when crops side by side cover the track."""
        room = max(0, self.cache.samples(key) - self.length)
        n = min(n, 1 + -(-room // self.length))
        return np.linspace(0, room, n).round().astype(int) if n > 1 else np.array([room // 2])

    def _crops(self, key: str, starts) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.cache.crop(key, int(s), self.length) for s in starts])).to(self.device)

    def prepare(self, keys, progress) -> None:
        """A probe's frozen vectors for every track (the embedder runs once, not per epoch)."""
        for key in keys:
            crops = self._crops(key, self._starts(key, PROBE_POSITIONS))
            self.frozen[key] = torch.cat([self.model.frozen(c) for c in crops.split(self.config.batch_size)])
            progress(1)

    def train_batch(self, keys, rng: np.random.Generator) -> torch.Tensor:
        if self.frozen:
            return torch.stack([self.frozen[k][rng.integers(len(self.frozen[k]))] for k in keys])
        starts = [rng.integers(0, max(1, self.cache.samples(k) - self.length + 1)) for k in keys]
        return torch.stack([self._crops(k, [s])[0] for k, s in zip(keys, starts)])

    def eval_inputs(self, key: str) -> torch.Tensor:
        return self.frozen[key] if self.frozen else self._crops(key, self._starts(key, self.config.eval_crops))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs to train: logits, or the predicted vector of a regressor."""
        outputs = self.model.head(inputs) if self.frozen else self.model.features(inputs)
        return outputs.embedding if self.model.model_config.task == "vector" else outputs.logits


def _loss(kind: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if kind == "classes":
        return torch.nn.functional.cross_entropy(outputs, targets.long())
    if kind == "tags":
        return torch.nn.functional.binary_cross_entropy_with_logits(outputs, targets)
    return (1 - torch.nn.functional.cosine_similarity(outputs, targets)).mean()


@torch.no_grad()
def predict(model: AudioModel, inputs: _Inputs, keys, kind: str) -> np.ndarray:
    """Per-track predictions: class or tag probabilities, or the vector, averaged over crops."""
    model.eval()
    rows = []
    for key in keys:
        out = torch.cat([inputs.forward(x) for x in inputs.eval_inputs(key).split(inputs.config.batch_size)])
        out = {"classes": lambda o: torch.softmax(o, -1), "tags": torch.sigmoid}.get(kind, lambda o: o)(out)
        rows.append(out.mean(0).cpu().numpy())
    return np.stack(rows)


def metrics(kind: str, predictions: np.ndarray, truth: np.ndarray) -> dict:
    """The figures of one split; ``score`` is the one early stopping follows."""
    if kind == "classes":
        accuracy = float((predictions.argmax(1) == truth).mean())
        return {"score": accuracy, "accuracy": accuracy}
    if kind == "tags":
        try:
            roc, pr = tag_auc(predictions, truth)
        except ParameterError:
            roc = pr = float("nan")
        return {"score": roc, "roc_auc": roc, "pr_auc": pr}
    cosine = float((normalize(predictions) * truth).sum(1).mean())
    return {"score": cosine, "cosine": cosine}


# --- checkpoints --------------------------------------------------------------------------

def _save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, values in opt["state"].items():
        for name, value in values.items():
            tensors[f"optimizer.{index}.{name}"] = torch.as_tensor(value).cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {"state": json.dumps(state), "param_groups": json.dumps(opt["param_groups"])}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, tmp, metadata=metadata)
    tmp.replace(path)


def _load_checkpoint(path: Path, model, optimizer) -> dict:
    from safetensors.torch import safe_open

    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": json.loads(metadata["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    return json.loads(metadata["state"])


# --- the loop -----------------------------------------------------------------------------

def _no_progress(total: int, desc: str):
    class _Silent:
        def update(self, n=1): ...
        def set_postfix_str(self, s): ...
        def close(self): ...
    return _Silent()


Progress = Callable[[int, str], object]  # (total, description) -> an object with update(n), close()


@dataclasses.dataclass
class Run:
    config: TrainConfig
    dataset: datasets.Dataset
    task: Task
    cache: WaveCache
    history: list[dict]
    stopped_early: bool
    frozen: dict[str, torch.Tensor]  # a probe's embedder vectors per track; empty for other models


RESUMABLE_CHANGES = ("epochs", "patience")  # a resumed run may be given more time, nothing else


def _identity(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}


def train(config: TrainConfig, run_dir: Path, *, device: str = "auto", progress: Progress = _no_progress,
          say: Callable[[str], object] = log.info) -> Run:
    """Train (or resume) the run in ``run_dir``; returns what :func:`report` needs.

    ``say`` is told, one line each, where the decoded-audio cache is and its size, and
    each epoch's loss, validation figures and time."""
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = run_dir / CHECKPOINT_FILE
    dataset = datasets.open_dataset(config.data)
    task = _task(config, dataset, run_dir)
    device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto"
                          else device)
    model = build_model(config, task).to(device)
    keys = sorted({k for split in task.splits.values() for k in split})
    bar = progress(len(keys), "decoding")
    cache = WaveCache(Path(config.cache).expanduser() if config.cache else default_cache(),
                      [dataset.tracks[k] for k in keys], sample_rate=model.window.sample_rate,
                      max_seconds=config.max_seconds, progress=bar.update)
    bar.close()
    say(f"decoded-audio cache: {cache.data_path} ({human_size(cache.size_on_disk)}, "
        f"{'reused' if cache.reused else 'written now'})")
    for key, reason in cache.failures.items():
        log.warning("left out: %s", reason)
    task.splits = {s: [k for k in split if k in cache] for s, split in task.splits.items()}
    empty = [s for s, split in task.splits.items() if not split]
    if empty:
        raise ParameterError(f"{config.data}: no decodable tracks in the {', '.join(empty)} split")
    inputs = _Inputs(model, cache, config, device)
    if isinstance(model, Probe):
        kept = [k for split in task.splits.values() for k in split]
        bar = progress(len(kept), "frozen embeddings")
        inputs.prepare(kept, bar.update)
        bar.close()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)  # crops and order; torch's generator: dropout
    torch.manual_seed(config.seed)
    state = {"config": json.loads(json.dumps(dataclasses.asdict(config))), "epoch": 0, "step": 0, "best": None, "bad_epochs": 0,
             "history": [], "rng": rng.bit_generator.state}
    if checkpoint_path.exists():
        saved = _load_checkpoint(checkpoint_path, model, optimizer)
        if _identity(saved["config"]) != _identity(state["config"]):
            raise ParameterError(f"{run_dir} holds a run with another config; resume it with the same options "
                                 "or train into another --out")
        state = {**saved, "config": state["config"]}
        rng.bit_generator.state = state["rng"]
    train_keys = task.splits["train"]
    if state["epoch"]:
        say(f"resuming {run_dir} after epoch {state['epoch']}")
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.patience:
        started = time.perf_counter()
        model.train()
        order = rng.permutation(np.repeat(train_keys, config.crops_per_track))
        batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        bar = progress(len(batches), f"epoch {state['epoch'] + 1}/{config.epochs}")
        losses = []
        for batch in batches:
            if len(batch) < 2 and len(batches) > 1:
                continue  # batch norm needs two examples
            targets = torch.from_numpy(task.stack(batch)).to(device)
            loss = _loss(task.kind, inputs.forward(inputs.train_batch(batch, rng)), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            state["step"] += 1
            bar.update(1)
            bar.set_postfix_str(f"loss {np.mean(losses):.3f}")
        bar.close()
        valid = metrics(task.kind, predict(model, inputs, task.splits["valid"], task.kind),
                        task.stack(task.splits["valid"]))
        state["epoch"] += 1
        seconds = time.perf_counter() - started
        state["history"].append({"epoch": state["epoch"], "step": state["step"],
                                 "train_loss": float(np.mean(losses)), "valid": valid, "seconds": round(seconds, 2)})
        improved = state["best"] is None or valid["score"] > state["best"]
        if improved:
            state["best"], state["bad_epochs"] = valid["score"], 0
            model_files.save(model, run_dir / model_files.MODEL_FILE)
        else:
            state["bad_epochs"] += 1
        figures = ", ".join(f"{name} {value:.3f}" for name, value in valid.items() if name != "score")
        say(f"epoch {state['epoch']}/{config.epochs}: loss {np.mean(losses):.4f}, validation {figures}"
            f"{' (best so far)' if improved else ''}, {seconds:.1f} s")
        state["rng"] = rng.bit_generator.state
        _save_checkpoint(checkpoint_path, model, optimizer, state)
    if state["bad_epochs"] >= config.patience:
        say(f"stopped early: no better validation figure for {config.patience} epochs")
    return Run(config, dataset, task, cache, state["history"], state["bad_epochs"] >= config.patience,
               inputs.frozen)
