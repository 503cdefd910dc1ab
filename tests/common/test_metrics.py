import numpy as np
import pytest

from common.metrics import compute_metrics, metric_names


def test_accuracy_and_f1():
    m = compute_metrics("mrpc", np.array([1, 1, 0, 0]), np.array([1, 0, 0, 1]))
    assert m == {"accuracy": 0.5, "f1": 0.5}


def test_f1_counts_the_given_positive_class():
    p, r = np.array([0, 0, 1]), np.array([0, 1, 1])
    assert compute_metrics("qqp", p, r, positive_label=0)["f1"] == pytest.approx(2 / 3)


def test_matthews_and_correlations():
    assert compute_metrics("cola", np.array([1, 0, 1, 0]), np.array([1, 0, 1, 0])) == {"matthews_correlation": 1.0}
    m = compute_metrics("stsb", np.array([0.1, 0.5, 0.9, 2.0]), np.array([1.0, 2.0, 3.0, 4.5]))
    assert m["spearmanr"] == pytest.approx(1.0) and 0.9 < m["pearson"] < 1.0


def test_default_is_accuracy():
    assert metric_names("sst2") == ("accuracy",) and metric_names(None) == ("accuracy",)
