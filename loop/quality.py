"""Quality metrics of labelled outcomes: one pure function per task over arrays of (label, output).

Classification outputs are probabilities of the positive class; the operating point turns them
into decisions for accuracy, precision and recall. ROC AUC is exact (Mann–Whitney ranks) and
absent while a window holds one class only.

>>> import numpy as np
>>> m = classification_metrics(np.array([0, 0, 1, 1.0]), np.array([0.1, 0.6, 0.4, 0.9]))
>>> {k: round(v, 3) for k, v in m.items()}  # doctest: +NORMALIZE_WHITESPACE
{'accuracy': 0.5, 'log_loss': 0.511, 'brier': 0.185, 'precision': 0.5, 'recall': 0.5,
 'roc_auc': 0.75}
>>> regression_metrics(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
{'mae': 1.0, 'rmse': 1.4142135623730951}
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Task = Literal["classification", "regression"]
_EPS = 1e-7


def roc_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Exact ROC AUC, ties counted half; None when only one class is present."""
    positives = int(np.sum(y > 0.5))
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.size, dtype=np.float64)
    sorted_p = p[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    rank_sum = float(np.sum(ranks[y > 0.5]))
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def classification_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    clipped = np.clip(p, _EPS, 1 - _EPS)
    truth = y > 0.5
    decided = p >= threshold
    true_positives = int(np.sum(truth & decided))
    metrics = {
        "accuracy": float(np.mean(truth == decided)),
        "log_loss": float(-np.mean(np.where(truth, np.log(clipped), np.log(1 - clipped)))),
        "brier": float(np.mean((p - y) ** 2)),
        "precision": true_positives / max(int(np.sum(decided)), 1),
        "recall": true_positives / max(int(np.sum(truth)), 1),
    }
    auc = roc_auc(y, p)
    if auc is not None:
        metrics["roc_auc"] = auc
    return metrics


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    error = p - y
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2)))}


def quality_metrics(
    task: Task, y: np.ndarray, p: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(y, p, threshold)
    return regression_metrics(y, p)


def example_loss(task: Task, label: float, output: float) -> float:
    """One outcome's loss for sequential comparisons: Brier (bounded, proper) or squared error."""
    return (
        (output - label) ** 2 if task == "regression" else (min(max(output, 0.0), 1.0) - label) ** 2
    )
