"""A deferral head: tier 1's own estimate that its label is the one tier 2 would give.

Max softmax asks "how sure is the small model of its label"; a cascade needs
"would the big model say the same". The two differ where the student is
confidently wrong in ways the teacher is not (a negation it never learnt,
sarcasm), and those are the items worth escalating. Distillation already
computes the teacher's logits on the training sentences, so agreement is known
there for free: a logistic regression on the student's own features (its
mean-pooled last hidden state plus the logit margin and entropy) is fitted to
it, on distillation sentences the student did not train on.

The head is saved beside the model (``tango_deferral.json``). A tier that has
one reports, as its confidence, the head's probability of agreement; its
label is still the classifier's argmax. So every command that routes (eval,
label, sweep, the workers) routes on it without knowing, and a model trained
elsewhere keeps routing on max softmax, as the seed's interface does.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import ConfigError, DataError, ModelLoadError

log = logging.getLogger(__name__)

DEFERRAL_FILE = "tango_deferral.json"
PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # L2 strengths tried, chosen by cross-validated log-loss
_FOLDS = 3


@dataclass
class DeferralHead:
    """Standardised features -> logistic regression -> probability of agreeing with tier 2."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    report: dict = field(default_factory=dict)

    def agreement(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / DEFERRAL_FILE
        data = {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "bias": float(self.bias), "report": self.report}
        path.write_text(json.dumps(data) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> "DeferralHead | None":
        """The head saved beside a local model; None for a hub id or a model trained without one."""
        path = Path(model_dir) / DEFERRAL_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            head = cls(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64),
                       np.asarray(data["weights"], dtype=np.float64), float(data["bias"]), data.get("report", {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{path}: not a valid deferral head ({exc})") from exc
        if not (head.mean.shape == head.scale.shape == head.weights.shape and head.mean.ndim == 1):
            raise ModelLoadError(f"{path}: mean, scale and weights must be vectors of one length")
        return head

    @property
    def width(self) -> int:
        return int(len(self.weights))


def features(logits: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """What the head sees per item: the pooled hidden state, the top-2 logit margin and the entropy.

    Both logit features are taken at temperature 1, so recalibrating the
    model's temperature later does not move the head's inputs."""
    logits = np.asarray(logits, dtype=np.float64)
    top = np.sort(logits, axis=1)
    margin = top[:, -1] - top[:, -2]
    shifted = logits - top[:, -1:]
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)
    return np.column_stack([np.asarray(pooled, dtype=np.float64), margin, entropy])


def routed_probabilities(probs: np.ndarray, agreement: np.ndarray) -> np.ndarray:
    """Rows whose argmax is unchanged and whose max is the agreement probability.

    An agreement below 1/L cannot be a max, so it is raised just above 1/L:
    such items fall below every threshold that escalates anything. The rest of
    the mass is spread evenly over the other labels."""
    probs = np.asarray(probs, dtype=np.float64)
    n, labels = probs.shape
    top = probs.argmax(axis=1)
    floor = 1.0 / labels + 1e-6
    confidence = np.clip(np.asarray(agreement, dtype=np.float64), floor, 1.0)
    out = np.repeat(((1.0 - confidence) / (labels - 1))[:, None], labels, axis=1)
    out[np.arange(n), top] = confidence
    return out


def fit_head(x: np.ndarray, agree: np.ndarray) -> DeferralHead:
    """L2 logistic regression, its penalty chosen by cross-validated log-loss.

    The report compares the head's cross-validated AUROC at telling
    disagreement apart with max softmax's on the same items, so a head that
    does not beat max softmax says so where it is saved."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(agree, dtype=np.float64)
    if len(x) != len(y) or x.ndim != 2:
        raise ConfigError(f"deferral features {x.shape} do not match {len(y)} targets")
    disagreements = int((y == 0).sum())
    if disagreements < _FOLDS or disagreements > len(y) - _FOLDS:
        raise DataError(f"the deferral head needs both agreement and disagreement with the teacher among its "
                        f"{len(y)} held-out items, found {disagreements} disagreements; hold out more items")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    folds = np.random.default_rng(0).permutation(len(y)) % _FOLDS
    scored = {penalty: _cross_validated(z, y, folds, penalty) for penalty in PENALTIES}
    penalty = min(scored, key=lambda p: scored[p][0])
    weights, bias = _logistic(z, y, penalty)
    margin = x[:, -2]  # max softmax ranks binary items exactly as the margin does
    report = {"items": int(len(y)), "disagreements": disagreements, "penalty": penalty,
              "cv_log_loss": round(scored[penalty][0], 5), "cv_auroc": round(auroc(scored[penalty][1], y), 4),
              "max_softmax_auroc": round(auroc(margin, y), 4)}
    log.info("deferral head: %s", report)
    return DeferralHead(mean, scale, weights, bias, report)


def _cross_validated(z: np.ndarray, y: np.ndarray, folds: np.ndarray, penalty: float) -> tuple[float, np.ndarray]:
    predicted = np.empty(len(y))
    for k in range(_FOLDS):
        test = folds == k
        weights, bias = _logistic(z[~test], y[~test], penalty)
        predicted[test] = 1.0 / (1.0 + np.exp(-np.clip(z[test] @ weights + bias, -50.0, 50.0)))
    clipped = np.clip(predicted, 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))), predicted


def _logistic(z: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, float]:
    """Mean log-loss plus ``penalty``/2 |w|^2 (not on the bias), by L-BFGS."""
    from scipy.optimize import minimize

    n, d = z.shape

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:d], params[d]
        s = z @ w + b
        loss = np.mean(np.logaddexp(0.0, s) - y * s) + 0.5 * penalty * w @ w
        residual = (1.0 / (1.0 + np.exp(-np.clip(s, -50.0, 50.0))) - y) / n
        return float(loss), np.append(z.T @ residual + penalty * w, residual.sum())

    start = np.zeros(d + 1)
    start[d] = np.log((y.mean() + 1e-6) / (1 - y.mean() + 1e-6))
    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return result.x[:d], float(result.x[d])


def auroc(score: np.ndarray, agree: np.ndarray) -> float:
    """How often an agreeing item scores above a disagreeing one (ties count half)."""
    from scipy.stats import rankdata

    agree = np.asarray(agree).astype(bool)
    positives, negatives = int(agree.sum()), int((~agree).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[agree].sum() - positives * (positives + 1) / 2) / (positives * negatives))

