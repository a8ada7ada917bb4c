"""One rule for comparing two computations that round differently (see DESIGN.md).

ONNX Runtime and NumPy, cuBLAS and OpenBLAS, a fused kernel and a library GEMM, two BLAS
kernels picked by two CPUs: each adds its products in its own order, so their results
differ in the last bits, and a label (an argmax) can flip where two classes score
within those bits of each other.  The rule:

* values agree within ``tolerance(dtype, terms)`` = ``terms * eps(dtype)``, relative and
  absolute (the scale of the values, 1 for probabilities and activations): ``terms`` is
  the size of the computation, the number of roundings on the longest path to one value
  (:func:`network_terms` for a network's outputs).  ``terms * eps`` bounds the error of
  a sum of ``terms`` products (Higham, *Accuracy and Stability*, 3.1) for values of the
  size of the scale; it is not made up per test;
* labels are compared only where the winner beats the runner-up by more than twice that
  tolerance (each side may be off by it).  Those are the *near-ties*: they are counted,
  every disagreement must be one of them, and there may be at most ``max_fraction`` of
  the samples (1%) of them, so a network whose scores are all tied cannot pass as
  agreeing.  Nothing is skipped silently: a failure names the samples and margins.
  A sample exactly tied on *both* sides is no rounding question (both take the first
  class, np.argmax's rule): given both sides' scores, it is compared exactly.

The helpers: :func:`tolerance`, :func:`network_terms` (a forward pass),
:func:`training_terms` (a training run), :func:`assert_values_agree`, :func:`margins`,
:func:`assert_labels_agree`, :func:`assert_accuracies_agree` (only the counts of right
answers known) and :func:`assert_trainings_agree` (two trainings of one network).

Limits: the bound assumes that the values' magnitudes (and the sums feeding them) are of
order ``scale``; a computation with large cancellations needs a larger ``scale``.
Bit-exact comparisons stay where both sides are specified to round identically (the
same backend, code path and kernel); such tests say so in a comment, not here.
"""

from __future__ import annotations

import math

import numpy as np

#: the own rounding of one activation (exp, tanh, division) in ulps, as libraries differ in it
ACTIVATION_ULPS = 4
#: at most this fraction of the samples may be near-ties (or, in a count of right answers, flipped)
NEAR_TIE_FRACTION = 0.01


def tolerance(dtype, terms: int) -> float:
    """How far two roundings of one computation of ``terms`` roundings in ``dtype`` may drift apart (relative)."""
    return float(terms) * float(np.finfo(np.dtype(dtype)).eps)


def network_terms(sizes) -> int:
    """The size of a forward pass through a network of ``sizes`` units per layer, for :func:`tolerance`.

    Each layer adds ``n_in`` products and a bias, then rounds in its activation (a few ulps).
    """
    return sum(n_in + 1 + ACTIVATION_ULPS for n_in in list(sizes)[:-1])


def training_terms(sizes, steps: int, batch_size: int) -> int:
    """The size of a training run of ``steps`` minibatch steps, for :func:`tolerance` of its losses and weights.

    Each step rounds again on the way to every parameter: its forward pass, its backward
    pass (the same products, transposed) and the gradient's sum over the batch, bounded
    as one computation.  Across steps the differences are independent roundings that add
    up like a random walk, ``sqrt(steps)`` (Higham and Mary's probabilistic bound, 2019),
    not ``steps`` times: the worst case would allow 1e-2 in float32 after 400 steps.  A run
    that amplifies them chaotically needs a shorter run in the test, not a larger tolerance.
    """
    return math.ceil(math.sqrt(steps)) * (2 * network_terms(sizes) + batch_size)


def assert_values_agree(actual, desired, dtype, terms: int, scale: float = 1.0, what: str = "values") -> None:
    """``actual`` and ``desired`` within ``tolerance(dtype, terms)``, relative and absolute (times ``scale``)."""
    tol = tolerance(dtype, terms)
    np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), rtol=tol, atol=tol * scale,
                               err_msg=f"{what} differ by more than {terms} x eps({np.dtype(dtype).name})")


def margins(scores) -> np.ndarray:
    """Per sample (row), how far the best score beats the runner-up (inf with one class)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[1] < 2:
        return np.full(scores.shape[0], np.inf)
    top = np.partition(scores, -2, axis=1)
    return top[:, -1] - top[:, -2]


def assert_labels_agree(labels, other_labels, scores, dtype, terms: int, scale: float = 1.0,
                        max_fraction: float = NEAR_TIE_FRACTION, what: str = "labels", other_scores=None) -> int:
    """Two computations' labels agree wherever the winner is clear; returns the number of near-ties.

    ``scores`` is one side's (samples, classes) scores that the labels are the argmax of
    (probabilities or outputs).  A sample is a near-tie where its best score beats the
    runner-up by at most ``2 * tolerance(dtype, terms) * scale``.  Fails where a clear
    winner differs, or where more than ``max_fraction`` of the samples are near-ties.

    With ``other_scores`` (the other side's), a sample whose best scores are exactly tied
    on *both* sides (e.g. a dead ReLU layer: the same bias on every output) is no
    rounding question: both break the tie alike (the first class, np.argmax's rule), so
    it is compared exactly and not counted as a near-tie.
    """
    labels, other_labels = np.asarray(labels), np.asarray(other_labels)
    scores = np.asarray(scores)
    assert labels.shape == other_labels.shape == scores.shape[:1], (labels.shape, other_labels.shape, scores.shape)
    margin = margins(scores)
    differ = labels != other_labels
    exact_tie = np.zeros(labels.shape, bool)
    if other_scores is not None:
        exact_tie = (margin == 0) & (margins(other_scores) == 0)
        tied_differ = np.flatnonzero(exact_tie & differ)
        assert tied_differ.size == 0, f"{what}: exact ties broken differently at samples {tied_differ[:10].tolist()}"
    near = (margin <= 2 * tolerance(dtype, terms) * scale) & ~exact_tie
    clear = np.flatnonzero(differ & ~near & ~exact_tie)
    assert clear.size == 0, (
        f"{what} differ at {clear.size} of {labels.size} samples where the winner is clear (margin above "
        f"{2 * tolerance(dtype, terms) * scale:.3g}): samples {clear[:10].tolist()}, "
        f"margins {margin[clear[:10]].tolist()}")
    allowed = int(max_fraction * labels.size)
    assert near.sum() <= allowed, (
        f"{what}: {int(near.sum())} of {labels.size} samples are near-ties (at most {allowed} allowed): scores too "
        f"close to tell the classes apart, samples {np.flatnonzero(near)[:10].tolist()}")
    return int(near.sum())


def assert_accuracies_agree(accuracy: float, other: float, scores, dtype, terms: int, scale: float = 1.0,
                            max_fraction: float = NEAR_TIE_FRACTION, what: str = "accuracy") -> int:
    """Two computations' accuracies on the same samples, where only the counts (not the labels) are known.

    The counts of right answers may differ by at most the number of near-ties in
    ``scores`` (one side's, as in :func:`assert_labels_agree`), and there may be at most
    ``max_fraction`` of them; returns their number.
    """
    near = int((margins(scores) <= 2 * tolerance(dtype, terms) * scale).sum())
    n = len(scores)
    assert near <= int(max_fraction * n), f"{what}: {near} of {n} samples are near-ties (at most " \
                                          f"{int(max_fraction * n)} allowed)"
    assert abs(accuracy - other) * n <= near + 1e-6, (
        f"{what}: {accuracy} and {other} differ by {round(abs(accuracy - other) * n)} answers of {n}, more than "
        f"the {near} near-ties")
    return near


def assert_trainings_agree(net, losses, reference, ref_losses, X_test, steps: int, batch_size: int) -> None:
    """Two trainings of one network (same start, same batches) by computations that round differently.

    Per-epoch ``losses`` and the trained parameters within the tolerance of the whole run
    (:func:`training_terms`); the trained networks' outputs on ``X_test`` within one
    forward pass's (:func:`network_terms`: the runs must end at the same network to within
    rounding), and their labels wherever the winner is clear.
    """
    dtype, sizes = reference.dtype, reference.sizes
    run = training_terms(sizes, steps, batch_size)
    assert_values_agree(losses, ref_losses, dtype, run, what="per-epoch losses")
    for a, b in zip(net.get_weights(), reference.get_weights()):
        assert_values_agree(a, b, dtype, run, what="trained parameters")
    forward = network_terms(sizes)
    probabilities = reference.predict_proba(X_test)
    assert_values_agree(net.predict_proba(X_test), probabilities, dtype, forward, what="trained outputs")
    assert_labels_agree(net.predict(X_test), reference.predict(X_test), probabilities, dtype, forward)
