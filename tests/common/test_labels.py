import numpy as np
import pytest

from common.errors import ConfigError, LabelMismatchError
from common.labels import align_labels, is_generic, parse_label_map


def test_same_names_in_another_order_match_by_name():
    a = align_labels(["negative", "positive"], ["Positive", "negative"])
    assert a.labels == ["negative", "positive"]
    assert a.big_to_canonical.tolist() == [1, 0] and not a.by_index


def test_generic_names_match_by_index_and_say_so(caplog):
    a = align_labels(["negative", "positive"], ["LABEL_0", "LABEL_1"])
    assert a.labels == ["negative", "positive"] and a.by_index
    assert a.big_to_canonical.tolist() == [0, 1]
    assert "by index" in caplog.text


def test_generic_small_takes_the_big_models_names():
    assert align_labels(["LABEL_0", "LABEL_1"], ["neg", "pos"]).labels == ["neg", "pos"]


def test_label_map_states_the_mapping():
    a = align_labels(["negative", "positive"], ["LABEL_1", "LABEL_0"],
                     parse_label_map("LABEL_0=negative, LABEL_1=positive"))
    assert a.big_to_canonical.tolist() == [1, 0] and not a.by_index


def test_different_meaningful_names_fail_listing_both_sets():
    with pytest.raises(LabelMismatchError) as err:
        align_labels(["negative", "positive"], ["cat", "dog"])
    assert "negative" in str(err.value) and "dog" in str(err.value)


def test_different_counts_fail_even_when_generic():
    with pytest.raises(LabelMismatchError, match="label counts"):
        align_labels(["LABEL_0", "LABEL_1"], ["a", "b", "c"])


@pytest.mark.parametrize("spec", ["LABEL_0", "=x", "a=,b=c"])
def test_bad_label_map(spec):
    with pytest.raises(ConfigError, match="FROM=TO"):
        parse_label_map(spec)


def test_is_generic():
    assert is_generic(["LABEL_0", "label_1"]) and not is_generic(["LABEL_0", "positive"])
    assert isinstance(align_labels(["a"] * 1, ["a"]).small_to_canonical, np.ndarray)
