"""Validation metrics of tabular models, computed with numpy (no Kafka, no torch).

>>> import numpy as np
>>> roc_auc(np.array([0, 0, 1, 1.0]), np.array([0.1, 0.4, 0.35, 0.8]))
0.75
>>> validation_metrics("regression", np.array([1.0, 2.0]), np.array([1.0, 4.0]))["valid_rmse"]
1.4142135623730951
"""

from __future__ import annotations

import numpy as np

from headwater.trainers.model_family import Task


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); 0.5 when only one class is present."""
    positive = y > 0.5
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(score, kind="mergesort")
    _, inverse, counts = np.unique(score[order], return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = np.empty(len(score))
    ranks[order] = average_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))


def validation_metrics(task: Task, y: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """``valid_loss`` (lower is better) plus the task's usual metrics."""
    if len(y) == 0:
        return {"valid_loss": float("nan")}
    if task == "binary":
        return {
            "valid_loss": log_loss(y, prediction),
            "valid_auc": roc_auc(y, prediction),
            "valid_accuracy": float(np.mean((prediction >= 0.5) == (y > 0.5))),
        }
    mse = float(np.mean((prediction - y) ** 2))
    return {"valid_loss": mse, "valid_rmse": float(np.sqrt(mse))}
