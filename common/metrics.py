"""The GLUE metrics, computed locally.

``evaluate`` fetches its metric scripts from the hub at run time, which the
offline machines this runs on cannot do; these are the same formulas.
"""
from __future__ import annotations

import numpy as np

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("matthews_correlation",),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "stsb": ("pearson", "spearmanr"),
}
DEFAULT_METRICS = ("accuracy",)


def metric_names(task: str | None) -> tuple[str, ...]:
    return TASK_METRICS.get(task or "", DEFAULT_METRICS)


def compute_metrics(task: str | None, predictions: np.ndarray, references: np.ndarray,
                    positive_label: int = 1) -> dict[str, float]:
    """The task's metrics as ``{name: value}`` (GLUE reports F1 of the positive class)."""
    predictions = np.asarray(predictions)
    references = np.asarray(references)
    return {name: float(_METRICS[name](predictions, references, positive_label))
            for name in metric_names(task)}


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """The share of correct predictions, 0-1 like every metric here (reports print points: x 100)."""
    return float((np.asarray(predictions) == np.asarray(references)).mean()) if len(references) else float("nan")


def _accuracy(p: np.ndarray, r: np.ndarray, _: int) -> float:
    return accuracy(p, r)


def _f1(p: np.ndarray, r: np.ndarray, positive: int) -> float:
    from sklearn.metrics import f1_score

    return f1_score(r, p, pos_label=positive, average="binary", zero_division=0.0)


def _matthews(p: np.ndarray, r: np.ndarray, _: int) -> float:
    from sklearn.metrics import matthews_corrcoef

    return matthews_corrcoef(r, p)


def _pearson(p: np.ndarray, r: np.ndarray, _: int) -> float:
    from scipy.stats import pearsonr

    return pearsonr(p.astype(float), r.astype(float))[0]


def _spearman(p: np.ndarray, r: np.ndarray, _: int) -> float:
    from scipy.stats import spearmanr

    return spearmanr(p.astype(float), r.astype(float))[0]


_METRICS = {"accuracy": _accuracy, "f1": _f1, "matthews_correlation": _matthews,
            "pearson": _pearson, "spearmanr": _spearman}
