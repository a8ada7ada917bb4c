"""The shared rule for comparing two differently rounding computations (tests/rounding.py)."""

import numpy as np
import pytest

from rounding import (assert_accuracies_agree, assert_labels_agree, assert_values_agree, margins, network_terms,
                      tolerance)


def scores_with_ties(n=200, ties=(), seed=0):
    """Softmax-like scores for ``n`` samples with clear winners, except exact ties at the rows ``ties``."""
    rng = np.random.default_rng(seed)
    scores = rng.dirichlet(np.full(4, 0.3), size=n)
    scores[np.arange(n), scores.argmax(axis=1)] += 0.05  # every winner clear by at least 0.05
    for row in ties:
        scores[row] = [0.4, 0.4, 0.1, 0.1]
    return scores


def test_the_tolerance_grows_with_the_computation_and_the_dtype():
    assert tolerance("float32", 1) == np.finfo(np.float32).eps
    assert tolerance("float32", 100) == pytest.approx(100 * tolerance("float32", 1))
    assert tolerance("float64", 100) < 1e-12 < tolerance("float32", 100)
    assert network_terms([64, 24, 16, 10]) == 65 + 25 + 17 + 3 * 4


def test_two_summation_orders_agree_within_the_tolerance():
    """The derivation's premise: float32 sums of n products in two orders stay within n * eps of their scale."""
    rng = np.random.default_rng(1)
    for n in (10, 100, 1000):
        x, w = rng.standard_normal((2, 50, n)).astype(np.float32)
        forward = np.array([np.float32(sum(np.float32(a * b) for a, b in zip(xs, ws))) for xs, ws in zip(x, w)])
        backward = np.array([np.float32(sum(np.float32(a * b) for a, b in zip(xs[::-1], ws[::-1])))
                             for xs, ws in zip(x, w)])
        scale = np.abs(x.astype(np.float64) * w).sum(axis=1).max()
        assert not np.array_equal(forward, backward)  # they do round differently
        assert_values_agree(forward, backward, "float32", n, scale=scale)


def test_values_beyond_the_tolerance_fail():
    a = np.linspace(0.1, 1.0, 10)
    assert_values_agree(a * (1 + 0.5 * tolerance("float32", 10)), a, "float32", 10)
    with pytest.raises(AssertionError, match="differ by more than 10 x eps"):
        assert_values_agree(a * (1 + 3 * tolerance("float32", 10)), a, "float32", 10)


def test_a_flipped_near_tie_passes_and_is_counted():
    scores = scores_with_ties(ties=[7])
    labels = scores.argmax(axis=1)
    flipped = labels.copy()
    flipped[7] = 1  # the other of the two tied classes
    assert labels[7] == 0 and margins(scores)[7] == 0
    assert assert_labels_agree(labels, flipped, scores, "float32", 100) == 1
    # a margin within twice the tolerance is a near-tie too, one just beyond it is not
    scores[7, 0] += 1.5 * tolerance("float32", 100)
    assert assert_labels_agree(labels, flipped, scores, "float32", 100) == 1
    scores[7, 0] += 1.0 * tolerance("float32", 100)
    with pytest.raises(AssertionError, match="differ at 1 of 200 samples where the winner is clear"):
        assert_labels_agree(labels, flipped, scores, "float32", 100)


def test_a_real_disagreement_fails():
    scores = scores_with_ties()
    labels = scores.argmax(axis=1)
    other = labels.copy()
    other[3] = (labels[3] + 1) % 4
    with pytest.raises(AssertionError, match=r"samples \[3\]"):
        assert_labels_agree(labels, other, scores, "float32", 100)
    assert assert_labels_agree(labels, labels.copy(), scores, "float32", 100) == 0


def test_too_many_near_ties_fail_even_when_the_labels_agree():
    scores = scores_with_ties(ties=[1, 2, 3])  # 3 of 200: more than 1%
    labels = scores.argmax(axis=1)
    with pytest.raises(AssertionError, match="3 of 200 samples are near-ties"):
        assert_labels_agree(labels, labels, scores, "float32", 100)
    assert assert_labels_agree(labels, labels, scores, "float32", 100, max_fraction=0.02) == 3
    with pytest.raises(AssertionError, match="near-ties"):  # an untrained network: all tied
        assert_labels_agree(np.zeros(50), np.zeros(50), np.full((50, 3), 1 / 3), "float64", 10)


def test_exact_ties_on_both_sides_are_compared_exactly_not_counted():
    scores = scores_with_ties(ties=[1, 2, 3])  # e.g. dead ReLUs: the same outputs, exactly, on both sides
    labels = scores.argmax(axis=1)
    assert assert_labels_agree(labels, labels, scores, "float32", 100, other_scores=scores.copy()) == 0
    flipped = labels.copy()
    flipped[2] = 1
    with pytest.raises(AssertionError, match=r"exact ties broken differently at samples \[2\]"):
        assert_labels_agree(labels, flipped, scores, "float32", 100, other_scores=scores.copy())
    other = scores.copy()
    other[2, 0] += 1e-7  # tied on one side only: a near-tie, counted
    assert assert_labels_agree(labels, labels, scores, "float32", 100, other_scores=other) == 1


def test_accuracies_may_differ_by_the_near_ties_only():
    scores = scores_with_ties(ties=[5])
    assert assert_accuracies_agree(0.5, 0.5 + 1 / 200, scores, "float32", 100) == 1  # one flipped near-tie
    with pytest.raises(AssertionError, match="differ by 2 answers of 200, more than the 1 near-ties"):
        assert_accuracies_agree(0.5, 0.5 + 2 / 200, scores, "float32", 100)
    with pytest.raises(AssertionError, match="3 of 200 samples are near-ties"):
        assert_accuracies_agree(0.5, 0.5, scores_with_ties(ties=[1, 2, 3]), "float32", 100)
