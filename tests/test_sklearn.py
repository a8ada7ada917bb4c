"""gpunn.sklearn.MLPClassifier: scikit-learn's own estimator checks, its meta-estimators, and its rules.

``parametrize_with_checks`` runs every check scikit-learn has for a classifier on three
instances (the defaults but ``max_iter=100``, as scikit-learn checks its own
MLPClassifier; logistic SGD in float64; tanh AdamW with the quadratic loss and feature
scaling).  None is expected to fail.  Two checks need the environment: the data-frame
check needs pandas (in the test extra) and the array-API check needs ``SCIPY_ARRAY_API=1``
before SciPy is imported (set in conftest.py); under CI a skip is a failure.
"""

import os
import pickle
import subprocess
import sys
import unittest

import numpy as np
import pytest

if not os.environ.get("CI"):  # under CI a missing scikit-learn fails the collection instead
    pytest.importorskip("sklearn", reason='scikit-learn is not installed (pip install "gpunn[sklearn]"); CI runs these')

from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import gpunn
from gpunn.sklearn import MLPClassifier

#: max_iter is kept small on purpose (as scikit-learn checks its own): not converging is expected here
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CHECKED = [
    MLPClassifier(max_iter=100, backend="numpy"),
    MLPClassifier(activation="logistic", solver="sgd", learning_rate_init=0.1, max_iter=100, backend="numpy",
                  dtype="float64"),
    MLPClassifier(activation="tanh", solver="adamw", loss="quadratic", scale="standard", max_iter=100,
                  backend="numpy"),
]


@pytest.mark.filterwarnings("ignore::gpunn.training.loop.TrainingWarning")  # some checks train on noise or huge values
@parametrize_with_checks(CHECKED)
def test_scikit_learns_estimator_checks(estimator, check):
    try:
        check(estimator)
    except (unittest.SkipTest, pytest.skip.Exception) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} [CI is set: every estimator check must run]", pytrace=False)
        raise


@pytest.fixture(scope="module")
def digits():
    return gpunn.load_dataset("digits")


def small(**params):
    """A small, quick estimator (a larger step than scikit-learn's default, for few epochs)."""
    return MLPClassifier(**{"hidden_layer_sizes": (32,), "learning_rate_init": 0.01, "backend": "numpy",
                            "random_state": 0, **params})


# -- what users do with an estimator ------------------------------------------------------------------------
def test_grid_search_over_two_parameters_on_the_digits(digits):
    search = GridSearchCV(small(max_iter=20), {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(16,), (32,)]}, cv=3)
    search.fit(digits.X_train, digits.y_train)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["hidden_layer_sizes"] in [(16,), (32,)]
    assert search.best_score_ > 0.9
    assert search.score(digits.X_test, digits.y_test) > 0.9


def test_in_a_pipeline(digits):
    pipeline = make_pipeline(StandardScaler(), small(max_iter=20))
    pipeline.fit(digits.X_train, digits.y_train)
    assert pipeline.score(digits.X_test, digits.y_test) > 0.9


def test_string_labels_round_trip_through_fit_predict_and_pickle(digits):
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    est = small(max_iter=20, scale="standard").fit(digits.X_train, names[digits.y_train])
    assert est.classes_.tolist() == sorted(names.tolist())
    predicted = est.predict(digits.X_test)
    assert set(predicted) <= set(names) and np.mean(predicted == names[digits.y_test]) > 0.9
    assert est.score(digits.X_test, names[digits.y_test]) == np.mean(predicted == names[digits.y_test])
    again = pickle.loads(pickle.dumps(est))
    # exact: the same weights through the same backend and code path round identically
    assert np.array_equal(again.predict(digits.X_test), predicted)
    np.testing.assert_array_equal(again.predict_proba(digits.X_test), est.predict_proba(digits.X_test))
    # the optimizer's state travels too: one more epoch on each gives the same weights
    est.partial_fit(digits.X_train, names[digits.y_train])
    again.partial_fit(digits.X_train, names[digits.y_train])
    for a, b in zip(again.coefs_ + again.intercepts_, est.coefs_ + est.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loss", ["cross_entropy", "quadratic"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_probability_rows_sum_to_one(loss, n_classes):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.arange(60) % n_classes
    est = small(max_iter=5, loss=loss).fit(X, y)
    proba = est.predict_proba(X)
    assert proba.shape == (60, n_classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(est.predict(X), est.classes_[proba.argmax(axis=1)])  # exact: predict is this argmax


def test_clone_keeps_the_parameters_not_the_fit(digits):
    est = small(max_iter=2, solver="sgd", dtype="float64").fit(digits.X_train[:100], digits.y_train[:100])
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "network_")


# -- parameters: scikit-learn's names, gpunn's limits ---------------------------------------------------------
@pytest.mark.parametrize("param, value, supported", [
    ("activation", "identity", "'logistic', 'tanh', 'relu'"),
    ("solver", "lbfgs", "'sgd', 'adam', 'adamw'"),
    ("learning_rate", "adaptive", "'constant'"),
    ("loss", "log_loss", "'cross_entropy', 'quadratic'"),
    ("dtype", "float16", "'float32', 'float64'"),
])
def test_unsupported_values_name_what_is_supported(param, value, supported):
    with pytest.raises(ValueError, match=f"{param}='{value}' is not supported .* use one of {supported}"):
        MLPClassifier(**{param: value}).fit([[0.0], [1.0]], [0, 1])


@pytest.mark.parametrize("param, value, fragment", [
    ("hidden_layer_sizes", (10, 0), r"hidden_layer_sizes must be in \[1, inf\)"),
    ("momentum", 1.0, r"momentum must be in \[0, 1\)"),
    ("max_iter", 2.5, "max_iter must be an integer"),
    ("batch_size", "big", "batch_size"),
    ("learning_rate_init", 0.0, r"learning_rate_init must be in \(0, inf\)"),
])
def test_out_of_range_values_are_refused_by_fit(param, value, fragment):
    est = MLPClassifier(**{param: value})  # stored verbatim, checked by fit
    assert est.get_params()[param] == value
    with pytest.raises(ValueError, match=fragment):
        est.fit([[0.0], [1.0]], [0, 1])


def test_defaults_are_scikit_learns_where_the_meaning_is_the_same():
    ours, theirs = MLPClassifier().get_params(), SklearnMLP().get_params()
    shared = set(ours) & set(theirs)
    assert shared >= {"hidden_layer_sizes", "activation", "solver", "alpha", "batch_size", "learning_rate_init",
                      "max_iter", "momentum", "nesterovs_momentum", "beta_1", "beta_2", "epsilon", "random_state",
                      "tol", "n_iter_no_change", "early_stopping", "validation_fraction", "warm_start", "verbose",
                      "shuffle", "learning_rate"}
    assert {name: ours[name] for name in shared} == {name: theirs[name] for name in shared}
    assert set(ours) - shared == {"loss", "scale", "backend", "dtype"}


def test_alpha_is_scikit_learns_l2_per_batch(digits):
    est = small(max_iter=1, alpha=0.5, batch_size=50).fit(digits.X_train[:200], digits.y_train[:200])
    assert est.network_.optimizer.weight_decay == 0.5 / 50
    W = est.coefs_
    penalty = 0.5 * 0.5 * sum(float((w.astype(np.float64) ** 2).sum()) for w in W) * 4 / 200  # 4 batches
    assert est.loss_curve_ == [pytest.approx(est.network_.history.history["loss"][-1] + penalty, rel=1e-6)]
    adamw = small(max_iter=1, alpha=0.5, solver="adamw").fit(digits.X_train[:200], digits.y_train[:200])
    assert adamw.network_.optimizer.weight_decay == 0.5
    assert adamw.loss_curve_ == adamw.network_.history.history["loss"]  # decoupled decay: no loss term


# -- training: scikit-learn's rules -----------------------------------------------------------------------------
def test_stops_by_scikit_learns_rule_on_the_training_loss(digits):
    """With a tolerance no epoch can beat, both stop after n_iter_no_change + 2 epochs."""
    X, y = digits.X_train[:300], digits.y_train[:300]
    ours = small(tol=100.0, n_iter_no_change=3).fit(X, y)
    theirs = SklearnMLP(hidden_layer_sizes=(32,), tol=100.0, n_iter_no_change=3, random_state=0).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 5
    assert len(ours.loss_curve_) == 5 and ours.best_loss_ == min(ours.loss_curve_)


def test_early_stopping_keeps_the_best_epoch(digits):
    X, y = digits.X_train, digits.y_train
    est = small(early_stopping=True, validation_fraction=0.2, n_iter_no_change=2, max_iter=40).fit(X, y)
    assert len(est.validation_scores_) == est.n_iter_ < 40
    assert est.best_validation_score_ == max(est.validation_scores_) and est.best_loss_ is None
    # the split is scikit-learn's (stratified, by random_state): the kept weights score the best epoch's accuracy
    _, X_val, _, y_val = train_test_split(X, y, random_state=np.random.RandomState(0), test_size=0.2, stratify=y)
    # exact: the validation score is this predict's accuracy (the same float64 forward pass, same weights)
    assert est.score(X_val, y_val) == est.best_validation_score_


def test_max_iter_without_converging_warns_as_scikit_learn_does(digits):
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(2\) reached"):
        small(max_iter=2).fit(digits.X_train[:100], digits.y_train[:100])


def test_partial_fit_epochs_equal_one_fit(digits):
    X, y = digits.X_train[:200], digits.y_train[:200]
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        small().partial_fit(X, y)
    stepwise = small(dtype="float64")
    for _ in range(3):
        stepwise.partial_fit(X, y, classes=np.arange(10))
    assert stepwise.n_iter_ == 1 and len(stepwise.loss_curve_) == 3
    with pytest.warns(ConvergenceWarning):
        whole = small(dtype="float64", max_iter=3).fit(X, y)
    # exact: the same steps on the same backend, in the same order, round identically
    for a, b in zip(stepwise.coefs_ + stepwise.intercepts_, whole.coefs_ + whole.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert stepwise.loss_curve_ == whole.loss_curve_
    with pytest.raises(ValueError, match="classes not in classes_"):
        stepwise.partial_fit(X[:2], [3, 11])


def test_warm_start_trains_on_with_a_fresh_optimizer(digits):
    """As scikit-learn: the weights carry on; plain SGD (no state) then equals one longer fit."""
    X, y = digits.X_train[:200], digits.y_train[:200]
    settings = dict(solver="sgd", momentum=0.0, learning_rate_init=0.1, dtype="float64")
    warm = small(warm_start=True, max_iter=2, **settings).fit(X, y)
    warm.set_params(max_iter=3).fit(X, y)
    whole = small(max_iter=5, **settings).fit(X, y)
    assert warm.n_iter_ == 3 and len(warm.loss_curve_) == 5
    # exact: the same steps on the same backend, in the same order, round identically
    for a, b in zip(warm.coefs_, whole.coefs_):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="warm_start can only be used where y has the same classes"):
        warm.fit(X[y < 5], y[y < 5])


def test_verbose_prints_scikit_learns_lines(digits, capsys):
    small(max_iter=2, verbose=True).fit(digits.X_train[:100], digits.y_train[:100])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["Iteration 1", "Iteration 2"]


def test_scaling_is_fitted_on_the_training_data_only(digits):
    est = small(max_iter=1, scale="standard", early_stopping=True).fit(digits.X_train, digits.y_train)
    X_train, _ = train_test_split(digits.X_train, random_state=np.random.RandomState(0), test_size=0.1,
                                  stratify=digits.y_train)
    np.testing.assert_allclose(est.network_.scaler.offset, X_train.astype(np.float64).mean(axis=0))


# -- an optional extra -------------------------------------------------------------------------------------------
def test_gpunn_imports_without_scikit_learn_and_says_how_to_get_it():
    code = ("import sys; import gpunn; assert 'sklearn' not in sys.modules, 'import gpunn imported sklearn'; "
            "sys.modules['sklearn'] = None\n"
            "try:\n    import gpunn.sklearn\nexcept ImportError as exc:\n    print(exc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "gpunn[sklearn]"' in result.stdout, result.stdout + result.stderr
