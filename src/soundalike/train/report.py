"""The test-split report of a run: figures for the trained network and for the same network
with random weights, as markdown, JSON and plots (learning curve, confusion matrix)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from ..models import trained as model_files
from .trainer import Run, _Inputs, build_model, metrics, predict

def _figures(run: Run, model, device: torch.device, keys: list[str]) -> dict:
    inputs = _Inputs(model.to(device), run.cache, run.config, device)
    # a probe's twin has the same frozen embedder: its vectors from training serve both
    inputs.frozen = {k: run.frozen[k].to(device) for k in keys} if run.frozen else {}
    predictions = predict(model, inputs, keys, run.task.kind)
    truth = run.task.stack(keys)
    figures = metrics(run.task.kind, predictions, truth)
    if run.task.kind == "classes":
        guessed = predictions.argmax(1)
        figures["per_class_accuracy"] = {label: float((guessed[truth == i] == i).mean()) if (truth == i).any()
                                         else None for i, label in enumerate(run.task.labels)}
        figures["confusion"] = np.bincount(truth * len(run.task.labels) + guessed,
                                           minlength=len(run.task.labels) ** 2).reshape(
            len(run.task.labels), -1).tolist()
    return figures


def report(run: Run, run_dir: Path, *, device: str = "cpu") -> dict:
    """Test figures for the best model (rebuilt from its file alone) and its random-weights twin."""
    device = torch.device(device)
    keys = run.task.splits["test"]
    trained_figures = _figures(run, model_files.load(run_dir / model_files.MODEL_FILE), device, keys)
    random_figures = _figures(run, build_model(run.config, run.task, pretrained=False), device, keys)
    result = {"config": dataclasses.asdict(run.config), "dataset": {"kind": run.dataset.kind, "root": str(run.dataset.root),
                                                            "licence": run.dataset.licence,
                                                            "citation": run.dataset.citation},
              "tracks": {s: len(k) for s, k in run.task.splits.items()},
              "left_out": run.cache.failures, "epochs": len(run.history), "stopped_early": run.stopped_early,
              "history": run.history, "test": trained_figures, "random_weights": random_figures}
    if run.task.kind == "vector":
        mean = run.task.stack(run.task.splits["train"]).mean(0, keepdims=True)
        result["no_audio_baseline"] = metrics("vector", np.repeat(mean, len(keys), 0), run.task.stack(keys))
    (run_dir / "report.json").write_text(json.dumps(result, indent=2))
    _plot_learning_curve(run.history, run_dir / "learning_curve.png")
    if run.task.kind == "classes":
        _plot_confusion(np.array(trained_figures["confusion"]), run.task.labels, run_dir / "confusion.png")
    (run_dir / "report.md").write_text(to_markdown(result, run.task.labels))
    return result


def _f(x) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def to_markdown(result: dict, labels) -> str:
    c = result["config"]
    lines = [f"# {c['model']} on {c['data']}", "",
             f"- tracks: {result['tracks']}; epochs run: {result['epochs']}"
             + (" (stopped early)" if result["stopped_early"] else ""),
             f"- dataset licence: {result['dataset']['licence']}"]
    if result["dataset"]["citation"]:
        lines.append(f"- cite: {result['dataset']['citation']}")
    if result["left_out"]:
        lines.append(f"- left out (undecodable): {len(result['left_out'])} tracks")
    names = [k for k in result["test"] if k not in ("score", "per_class_accuracy", "confusion")]
    rows = [("trained", result["test"]), ("random weights", result["random_weights"])]
    if "no_audio_baseline" in result:
        rows.append(("no-audio baseline (mean training vector)", result["no_audio_baseline"]))
    lines += ["", "Test split, predictions averaged over each track's crops.", "",
              "| network | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {name} | " + " | ".join(_f(figures[n]) for n in names) + " |" for name, figures in rows]
    if "per_class_accuracy" in result["test"]:
        lines += ["", "| class | accuracy (trained) | accuracy (random weights) |", "|---|---|---|"]
        lines += [f"| {label} | {_f(result['test']['per_class_accuracy'][label])} | "
                  f"{_f(result['random_weights']['per_class_accuracy'][label])} |" for label in labels]
        lines += ["", "![confusion matrix](confusion.png)"]
    lines += ["", "![learning curve](learning_curve.png)", ""]
    return "\n".join(lines)


def _plot_learning_curve(history: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, loss_axis = plt.subplots(figsize=(6, 3.5))
    loss_axis.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    score_axis = loss_axis.twinx()
    score_axis.plot(epochs, [h["valid"]["score"] for h in history], "s-", color="tab:orange")
    score_axis.set_ylabel("validation " + next(k for k in history[0]["valid"] if k != "score"), color="tab:orange")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _plot_confusion(confusion: np.ndarray, labels, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 2 + 0.45 * len(labels)
    fig, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(confusion, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (i, j), n in np.ndenumerate(confusion):
        axis.text(j, i, str(n), ha="center", va="center", color="white" if n > confusion.max() / 2 else "black")
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
