"""``MLPClassifier`` and ``MLPRegressor``: gpunn as scikit-learn estimators, under scikit-learn's own names.

Switch by changing an import (as with cuML's GPU estimators)::

    from gpunn.sklearn import MLPClassifier, MLPRegressor   # instead of sklearn.neural_network's

The parameters keep scikit-learn's names and defaults: ``hidden_layer_sizes=(100,)``,
``activation="relu"`` (``identity``, ``logistic``, ``tanh``, ``relu``), ``solver="adam"``
(``lbfgs``, ``sgd``, ``adam``), ``alpha=1e-4``, ``batch_size="auto"`` (min(200, n_samples)),
``learning_rate="constant"`` (``invscaling``, ``adaptive``, with ``sgd``),
``learning_rate_init=1e-3``, ``power_t=0.5``, ``max_iter=200``, ``shuffle``,
``random_state``, ``tol=1e-4``, ``verbose``, ``warm_start``, ``momentum=0.9``,
``nesterovs_momentum=True``, ``early_stopping``, ``validation_fraction=0.1``, ``beta_1``,
``beta_2``, ``epsilon``, ``n_iter_no_change=10``, ``max_fun=15000``, and the regressor's
``loss="squared_error"``.  gpunn adds ``scale``, ``backend``, ``dtype`` and, for the
classifier, ``loss`` (``cross_entropy``, or the tutorial's ``quadratic``) and
``solver="adamw"``.  A value gpunn cannot honour is a ValueError naming what is supported,
raised by ``fit`` (parameters are stored verbatim by ``__init__`` and checked in
``fit``, as scikit-learn's developer guide asks).  ``fit`` and ``partial_fit`` take
``sample_weight``; ``X`` may be a SciPy sparse matrix (CSR/CSC, made dense in chunks:
gpunn's layers are dense).

How it trains is scikit-learn's recipe on gpunn's network (:class:`gpunn.Network`), with
scikit-learn's initial weights (Glorot uniform: ``U(-r, r)``, ``r = sqrt(6 / (fan_in +
fan_out))``, factor 2 for logistic units; biases drawn the same way):

* classifier: softmax outputs with the categorical cross-entropy, one output unit per
  class (two for a binary problem, so ``predict_proba`` rows always sum to 1); a
  multilabel indicator ``y`` trains sigmoid outputs with the binary cross-entropy, as
  scikit-learn does, and ``predict`` answers with an indicator matrix;
* regressor: identity outputs with the squared error; the targets are standardised
  inside the network (:mod:`gpunn.nn.targets`) and ``predict`` answers in their units.
  ``loss_curve_`` is therefore on the standardised targets (``1/2`` mean squared error
  per output), which also makes ``tol`` independent of the targets' units;
* ``sgd``, ``adam``: epochs of shuffled minibatches and scikit-learn's stopping rule
  (:class:`_StoppingRule`: ``tol``, ``n_iter_no_change``, ``early_stopping`` on a
  ``validation_fraction`` held out, stratified for single-label classification) with
  its ``ConvergenceWarning``, and its learning-rate schedules for ``sgd``:
  ``invscaling`` sets ``learning_rate_init / (t_ + 1) ** power_t`` after every epoch,
  ``adaptive`` divides the rate by 5 where the stopping rule would stop (and stops
  once it is at most 1e-6);
* ``lbfgs``: SciPy's L-BFGS-B over gpunn's flat parameter buffer, with loss and gradient
  from gpunn's forward pass and backprop over the whole set
  (:class:`gpunn.training.lbfgs.FullBatchObjective`), ``maxiter=max_iter``,
  ``maxfun=max_fun``, ``gtol=tol``.

Where the two differ, by design or by what gpunn's network offers:

* ``alpha`` is the L2 penalty ``alpha / (2 n_batch) ||W||^2`` of each minibatch, as in
  scikit-learn; gpunn's stochastic solvers apply it as the weight decay
  ``alpha / batch_size`` to every parameter, biases included (scikit-learn leaves biases
  alone; ``lbfgs`` here spares them too), and a short last batch gets the full batch's
  decay.  ``loss_curve_`` adds the penalty as scikit-learn does, from the weights at the
  end of each epoch.  With ``solver="adamw"`` (gpunn's extra) ``alpha`` is AdamW's
  decoupled decay instead, and no term of ``loss_curve_``.
* ``sample_weight`` is rescaled to mean 1 and each minibatch's weighted gradient is
  divided by the batch size (scikit-learn divides by the batch's sum of weights; the
  two agree for a full batch and on average); ``early_stopping``'s validation score
  is unweighted.
* Adam adds ``epsilon`` after the bias correction (PyTorch's order, see
  :mod:`gpunn.training.optim`), scikit-learn before it; the two agree as ``epsilon`` -> 0.
* ``loss="quadratic"`` (the classifier's extra) trains the tutorial's network instead:
  sigmoid outputs and the error 1/2 (t - y)^2; ``predict_proba`` then divides each row
  of outputs by its sum, which ranks the classes but is no calibrated probability.
* The regressor's ``loss="poisson"`` is not offered.
* ``predict_proba`` and ``predict`` compute in float64 whatever ``dtype`` trained
  (:meth:`gpunn.Network.inference_copy`; scikit-learn computes in the dtype of X, float64
  by default).  In float32 a sample's answer could differ in its last bit with the other
  samples of the call: a BLAS adds a GEMM's edge columns in another order than the rest
  (OpenBLAS's Prescott kernel does), and scikit-learn asks answers that do not depend on
  the samples' order to 1e-7, below float32's resolution.  The validation score of
  ``early_stopping`` is this ``predict``'s ``score`` (accuracy, or R^2), as scikit-learn's is.

``fit`` trains one gpunn network (``network_``) on the class indices of ``classes_``
(or the targets), so any labels scikit-learn accepts work.  The estimators pickle and
clone (a fitted network pickles as its model file, see
:meth:`gpunn.Network.__reduce__`).  Needs ``pip install "gpunn[sklearn]"`` (scikit-learn
1.6 or newer: ``validate_data`` and the estimator tags; SciPy for ``lbfgs``).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

try:
    import scipy.optimize
    import scipy.sparse
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn is an optional extra
    raise ImportError(f'gpunn.sklearn needs scikit-learn 1.6 or newer ({exc}); install it with: '
                      f'pip install "gpunn[sklearn]"') from exc

from gpunn.compute.backend import to_numpy
from gpunn.network import Network
from gpunn.nn.preprocessing import SCALINGS
from gpunn.nn.targets import TargetScaling, normalised_weights, regression_metrics
from gpunn.training.callbacks import Callback
from gpunn.training.lbfgs import FullBatchObjective
from gpunn.training.optim import OPTIMIZERS

#: scikit-learn's activation names -> gpunn's.
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: The classifier's output layer for each ``loss`` (softmax + cross-entropy is scikit-learn's).
OUTPUTS = {"cross_entropy": "softmax", "quadratic": "sigmoid"}
SOLVERS = ("lbfgs", *OPTIMIZERS)
LEARNING_RATES = ("constant", "invscaling", "adaptive")
#: scikit-learn's ``batch_size="auto"``: min(AUTO_BATCH, n_samples).
AUTO_BATCH = 200
#: Rows made dense at a time from a sparse ``X``.
SPARSE_CHUNK = 4096
#: ``adaptive``: the rate is divided by this where the stopping rule would stop, and
#: training stops once it is at most MIN_ADAPTIVE_RATE (scikit-learn's SGDOptimizer).
ADAPTIVE_DIVISOR = 5.0
MIN_ADAPTIVE_RATE = 1e-6


def _one_of(owner: str, name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        supported = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not supported by gpunn's {owner}; use one of {supported}")


def _number(name: str, value, low, high=None, low_open=False, high_open=False, integer=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    above = value > low if low_open else value >= low
    below = high is None or (value < high if high_open else value <= high)
    if not (above and below):  # NaN is neither
        right = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {'(' if low_open else '['}{low}, {right}, got {value!r}")


def _dense(X):
    """``X`` as a dense array; a SciPy sparse matrix is converted SPARSE_CHUNK rows at a time."""
    if not scipy.sparse.issparse(X):
        return X
    X = X.tocsr()
    dense = np.empty(X.shape, dtype=X.dtype)
    for start in range(0, X.shape[0], SPARSE_CHUNK):
        dense[start : start + SPARSE_CHUNK] = X[start : start + SPARSE_CHUNK].toarray()
    return dense


def _stochastic(estimator) -> bool:
    """``partial_fit`` exists for the stochastic solvers only (scikit-learn's ``_check_solver``)."""
    if estimator.solver not in OPTIMIZERS:
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. {estimator.solver} is "
                             f"not stochastic.")
    return True


class _BaseMLP(BaseEstimator):
    """What both estimators share: the parameters, their checks, the training and its records."""

    _owner = "MLP"

    def _init_common(self, hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                     learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start,
                     momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                     n_iter_no_change, max_fun, scale, backend, dtype):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.scale = scale
        self.backend = backend
        self.dtype = dtype

    # -- scikit-learn's interface ----------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train for up to ``max_iter`` epochs (``lbfgs``: iterations), anew or on with ``warm_start``."""
        return self._fit(X, y, sample_weight, incremental=False)

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Copies of the weight matrices, (inputs, outputs) per layer, as scikit-learn's ``coefs_``."""
        check_is_fitted(self)
        return self.network_.get_weights()[::2]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Copies of the bias vectors, one per layer, as scikit-learn's ``intercepts_``."""
        check_is_fitted(self)
        return self.network_.get_weights()[1::2]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _inputs(self, X):
        """Prediction input: checked as in fit, sparse made dense."""
        check_is_fitted(self)
        return _dense(validate_data(self, X, reset=False, accept_sparse=["csr", "csc"],
                                    dtype=[np.float64, np.float32]))

    # -- training ----------------------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight, incremental: bool, classes=None):
        settings = self._checked_settings()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        fresh = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        X, y = validate_data(self, X, y, reset=fresh, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32],
                             multi_output=True, y_numeric=self._task == "regression")
        X = _dense(X)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        targets = self._targets(y, fresh, incremental, classes)
        self._rng = check_random_state(self.random_state)
        if fresh:
            self._start(X.shape[1], settings)
            self._fit_statistics(targets, sample_weight)
        if settings["solver"] == "lbfgs":
            self._fit_lbfgs(X, targets, sample_weight)
            return self
        X_train, y_train, w_train, validation = self._split(X, targets, sample_weight)
        n = X_train.shape[0]
        batch_size = self._batch_size(n)
        stopping = _StoppingRule(self, n, batch_size, l2=settings["solver"] != "adamw")
        network = self.network_
        options = self._optimizer_options(settings, batch_size)
        if not incremental:
            network.optimizer = None  # scikit-learn starts each fit with a fresh optimizer
        elif network.optimizer is not None and network.optimizer.name == settings["solver"]:
            network.optimizer.weight_decay = options["weight_decay"]  # a new batch size keeps the moments
            options["lr"] = network.optimizer.lr  # and a rate the schedule has moved keeps moving from there
        self.n_iter_ = 0
        stopping.validation = validation
        network.fit(X_train, y_train, epochs=1 if incremental else self.max_iter, batch_size=batch_size,
                    callbacks=[stopping], shuffle=bool(self.shuffle), sample_weight=w_train,
                    cuda_graph=self.learning_rate == "constant", **options)
        if self.early_stopping:
            with network.backend.device():
                network.params[...] = network.backend.xp.asarray(self._best_params)
        if not incremental and not stopping.converged and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          f"optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        return self

    def _fit_lbfgs(self, X, targets, sample_weight) -> None:
        """scikit-learn's ``_fit_lbfgs``: SciPy's L-BFGS-B over the flat parameter buffer."""
        network = self.network_
        network.fit(X, targets, epochs=0, sample_weight=sample_weight)  # fits the scaling / targets' statistics
        objective = FullBatchObjective(network, X, targets, sample_weight, alpha=self._layer_alphas(),
                                       loss_scale=1.0 / network.sizes[-1] if self._task == "regression" else 1.0)
        result = scipy.optimize.minimize(objective, objective.initial(), method="L-BFGS-B", jac=True,
                                         options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        if result.status != 0:
            warnings.warn(f"lbfgs failed to converge after {result.nit} iteration(s) (status={result.status}): "
                          f"{result.message}. Increase the number of iterations (max_iter) or scale the data.",
                          ConvergenceWarning, stacklevel=4)
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        with network.backend.device():
            network.params[...] = network.backend.xp.asarray(result.x, dtype=network.dtype)

    def _fit_statistics(self, targets, sample_weight) -> None:
        """Anything fitted on the first fit's targets before training (the regressor's standardisation)."""

    def _alpha(self) -> float:
        """The L2 strength on the scale the network's loss is on (the regressor's is standardised)."""
        return float(self.alpha)

    def _layer_alphas(self) -> list[float]:
        """Each layer's L2 strength for ``lbfgs`` (whose penalty can differ by layer)."""
        return [float(self.alpha)] * (self.n_layers_ - 1)

    def _common_settings(self) -> dict:
        """The shared parameters checked; ValueError naming the fix."""
        owner = self._owner
        _one_of(owner, "activation", self.activation, list(ACTIVATIONS))
        _one_of(owner, "solver", self.solver, SOLVERS)
        _one_of(owner, "learning_rate", self.learning_rate, LEARNING_RATES)
        _one_of(owner, "scale", self.scale, SCALINGS)
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if np.iterable(hidden) else [hidden]
        for size in hidden:
            _number("each of hidden_layer_sizes", size, 1, integer=True)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _number("batch_size ('auto' or an integer)", self.batch_size, 1, integer=True)
        for name in ("momentum", "beta_1", "beta_2", "validation_fraction"):
            _number(name, getattr(self, name), 0, 1, high_open=True)
        _number("alpha", self.alpha, 0)
        _number("tol", self.tol, 0)
        _number("learning_rate_init", self.learning_rate_init, 0, low_open=True)
        _number("power_t", self.power_t, 0)
        _number("epsilon", self.epsilon, 0, low_open=True)
        _number("max_iter", self.max_iter, 1, integer=True)
        _number("max_fun", self.max_fun, 1, integer=True)
        if self.n_iter_no_change != np.inf:
            _number("n_iter_no_change (an integer or np.inf)", self.n_iter_no_change, 1, integer=True)
        if self.early_stopping and not self.validation_fraction:
            raise ValueError("early_stopping=True needs a validation_fraction above 0, e.g. 0.1")
        try:
            dtype = None if self.dtype is None else np.dtype(self.dtype).name
        except TypeError:
            dtype = None
        _one_of(owner, "dtype", dtype if dtype in ("float32", "float64") else self.dtype, ["float32", "float64"])
        return {"hidden": [int(size) for size in hidden], "activation": ACTIVATIONS[self.activation],
                "solver": self.solver, "dtype": dtype}

    def _new_network(self, sizes, settings: dict, **outputs) -> Network:
        seed = (self.random_state if isinstance(self.random_state, numbers.Integral) and self.random_state >= 0
                else int(self._rng.randint(np.iinfo(np.int32).max)))
        self.n_layers_ = len(sizes)
        self.n_outputs_ = sizes[-1]
        self.t_ = 0
        self._no_improvement_count = 0
        if settings["solver"] != "lbfgs":
            self.loss_curve_ = []
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf
        network = Network(sizes, activation=settings["activation"], init="glorot_uniform", backend=self.backend,
                          dtype=settings["dtype"], seed=int(seed), scale=self.scale, **outputs)
        if self.early_stopping and settings["solver"] != "lbfgs":
            self._best_params = to_numpy(network.params).copy()
        return network

    def _split(self, X, targets, sample_weight):
        """The training part and, with early stopping, the validation data (stratified for single-label classes)."""
        if not self.early_stopping:
            return X, targets, sample_weight, None
        stratify = targets if self._task == "classification" and targets.ndim == 1 else None
        parts = train_test_split(X, targets, *([] if sample_weight is None else [sample_weight]),
                                 random_state=self._rng, test_size=self.validation_fraction, stratify=stratify)
        X_train, X_val, y_train, y_val = parts[:4]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your "
                             "dataset.")
        return X_train, y_train, (None if sample_weight is None else parts[4]), (X_val, y_val)

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(AUTO_BATCH, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                          stacklevel=4)
        return int(np.clip(self.batch_size, 1, n))

    def _optimizer_options(self, settings: dict, batch_size: int) -> dict:
        """gpunn's ``fit`` options for the solver (see the module docstring for ``alpha``)."""
        solver = settings["solver"]
        options = {"optimizer": solver, "lr": self.learning_rate_init,
                   "weight_decay": self._alpha() if solver == "adamw" else self._alpha() / batch_size}
        if solver == "sgd":
            momentum = float(self.momentum)
            return {**options, "momentum": momentum, "nesterov": bool(self.nesterovs_momentum) and momentum > 0,
                    "lr_scaling": "none"}
        return {**options, "betas": (self.beta_1, self.beta_2), "eps": self.epsilon}


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier trained by gpunn (see the module docstring).

    Attributes after ``fit``: ``classes_``, ``n_features_in_`` (and
    ``feature_names_in_`` for data frames), ``loss_``, ``loss_curve_`` (per epoch, L2
    penalty included; stochastic solvers), ``best_loss_``, ``validation_scores_`` and
    ``best_validation_score_`` (with ``early_stopping``), ``n_iter_`` (epochs, or L-BFGS
    iterations, of the latest ``fit``), ``t_`` (samples seen by the stochastic solvers),
    ``n_layers_``, ``n_outputs_``, ``out_activation_`` (``softmax``, or ``logistic`` for
    multilabel targets and ``loss="quadratic"``), ``network_`` (the trained
    :class:`gpunn.Network`, which answers with class indices), and ``coefs_`` /
    ``intercepts_`` (copies of its weights).
    """

    _owner = "MLPClassifier"
    _task = "classification"

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, loss="cross_entropy", scale="none",
                 backend=None, dtype="float32"):
        self._init_common(hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                          learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start,
                          momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                          n_iter_no_change, max_fun, scale, backend, dtype)
        self.loss = loss

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``; the first call needs ``classes``, every label there will ever be."""
        first_call = not hasattr(self, "network_")
        if first_call and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if not first_call and classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call to partial_fit, "
                             f"{self.classes_!r}")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes if first_call else None)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, (samples, classes) in the order of ``classes_``; rows sum to 1
        (multilabel: each label's own probability)."""
        outputs = self._probabilities(self._inputs(X))
        return outputs

    def _probabilities(self, X) -> np.ndarray:
        """:meth:`predict_proba` of checked ``X``: the forward pass in float64 (see the module docstring)."""
        outputs = self.network_.inference_copy(np.float64).predict_proba(X)
        if self.network_.output_activation == "sigmoid" and not self._multilabel:  # loss="quadratic"
            sums = outputs.sum(axis=1, keepdims=True)
            outputs = np.divide(outputs, sums, out=np.full_like(outputs, 1 / outputs.shape[1]), where=sums > 0)
        return outputs

    def predict_log_proba(self, X) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class of each sample, as a label of ``classes_`` (multilabel: the indicator matrix)."""
        return self._answers(self.predict_proba(X))

    def _answers(self, probabilities) -> np.ndarray:
        if self._multilabel:
            return (probabilities > 0.5).astype(np.int64)
        return self.classes_[probabilities.argmax(axis=1)]

    def _validation_score(self, X_val, y_val) -> float:
        """``early_stopping``'s score of the held-out class indices (or indicator rows): the accuracy."""
        probabilities = self._probabilities(X_val)
        if self._multilabel:
            return float(np.mean(np.all((probabilities > 0.5) == (y_val > 0.5), axis=1)))
        return float(np.mean(probabilities.argmax(axis=1) == y_val))

    def to_onnx(self, path) -> None:
        """Write the fitted network as an ONNX model whose ``label`` output answers with ``classes_``.

        See :mod:`gpunn.saving.onnx_export`; ``classes_`` must be integers or strings.  The
        ``probabilities`` output is the network's: :meth:`predict_proba` for the default
        loss, the sigmoid outputs before their rows are scaled to sum 1 for ``loss="quadratic"``.
        """
        check_is_fitted(self)
        self.network_.to_onnx(path, classes=self.classes_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _checked_settings(self) -> dict:
        _one_of(self._owner, "loss", self.loss, list(OUTPUTS))
        return self._common_settings()

    def _targets(self, y, fresh: bool, incremental: bool, classes):
        """Class indices of ``classes_`` (fitted from the first fit's labels), or a multilabel indicator matrix."""
        multilabel = type_of_target(y) == "multilabel-indicator"
        if fresh:
            self._multilabel = multilabel
        elif multilabel != self._multilabel:
            raise ValueError("y is a multilabel indicator matrix in one fit and labels in another; use one kind")
        if multilabel:
            y = np.asarray(y.toarray() if scipy.sparse.issparse(y) else y)
            if fresh:
                self.classes_ = np.arange(y.shape[1])
            elif y.shape[1] != len(self.classes_):
                raise ValueError(f"y has {y.shape[1]} labels per sample but the model was fitted on "
                                 f"{len(self.classes_)}")
            return (y > 0).astype(np.float64)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        seen = unique_labels(y)
        if fresh:
            self.classes_ = seen if classes is None else unique_labels(classes)
        elif self.warm_start and not incremental and set(seen) != set(self.classes_):
            raise ValueError(f"warm_start can only be used where y has the same classes as in the previous call "
                             f"to fit: previously {self.classes_}, y has {seen}")
        unknown = np.setdiff1d(seen, self.classes_)
        if len(unknown):
            raise ValueError(f"y has classes not in classes_ {self.classes_}: {unknown}")
        return np.searchsorted(self.classes_, y)

    def _start(self, n_features: int, settings: dict) -> None:
        """A new network and fresh training records."""
        sizes = [n_features, *settings["hidden"], len(self.classes_)]
        if self._multilabel:
            self.network_ = self._new_network(sizes, settings, output_activation="sigmoid", loss="cross_entropy",
                                              multilabel=True)
            self.out_activation_ = "logistic"
        else:
            self.network_ = self._new_network(sizes, settings, output_activation=OUTPUTS[self.loss], loss=self.loss,
                                              classes=np.arange(sizes[-1]))
            self.out_activation_ = "softmax" if self.loss == "cross_entropy" else "logistic"


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor trained by gpunn (see the module docstring).

    Identity outputs and the squared error, on targets standardised inside the network;
    ``predict`` answers in the targets' units, (samples,) for 1-D ``y``.  Attributes as
    :class:`MLPClassifier`'s (no ``classes_``); ``out_activation_`` is ``identity``.
    """

    _owner = "MLPRegressor"
    _task = "regression"

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, scale="none", backend=None,
                 dtype="float32"):
        self.loss = loss
        self._init_common(hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                          learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start,
                          momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                          n_iter_no_change, max_fun, scale, backend, dtype)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, continuing from the last fit (or starting one)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X) -> np.ndarray:
        """The predicted targets, in their own units: (samples,) for 1-D ``y``, else (samples, outputs)."""
        X = self._inputs(X)
        return self.network_.inference_copy(np.float64).predict(X)

    def _validation_score(self, X_val, y_val) -> float:
        """``early_stopping``'s score of the held-out targets: R^2, as scikit-learn's ``score``."""
        return regression_metrics(self.network_.inference_copy(np.float64).predict(X_val), y_val)["r2"]

    def to_onnx(self, path) -> None:
        """Write the fitted network as an ONNX model whose ``prediction`` output is :meth:`predict`."""
        check_is_fitted(self)
        self.network_.to_onnx(path)

    def _checked_settings(self) -> dict:
        _one_of(self._owner, "loss", self.loss, ["squared_error"])
        return self._common_settings()

    def _fit_statistics(self, targets, sample_weight) -> None:
        weights = None if sample_weight is None else normalised_weights(sample_weight, len(targets))
        self.network_.target_scaling = TargetScaling.fit(targets.reshape(len(targets), -1), targets.ndim, weights)

    def _alpha(self) -> float:
        """``alpha`` divided by the targets' mean variance: the network's loss is on standardised targets,
        ``1 / std^2`` times scikit-learn's, so the penalty keeps its weight against the loss.  (Exact for
        the hidden layers; the output layer's weights are ``1 / std`` times a raw-scale network's, so
        its exact strength is ``alpha`` itself, which ``lbfgs`` uses: :meth:`_layer_alphas`.)"""
        return float(self.alpha) / float(np.mean(self.network_.target_scaling.std ** 2))

    def _layer_alphas(self) -> list[float]:
        return [self._alpha()] * (self.n_layers_ - 2) + [float(self.alpha)]

    def _targets(self, y, fresh: bool, incremental: bool, classes):
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        outputs = 1 if y.ndim == 1 else y.shape[1]
        if fresh:
            self._outputs = outputs
        elif outputs != self.n_outputs_:
            raise ValueError(f"y has {outputs} targets per sample but the model was fitted on {self.n_outputs_}")
        return y

    def _start(self, n_features: int, settings: dict) -> None:
        """A new network and fresh training records."""
        self.network_ = self._new_network([n_features, *settings["hidden"], self._outputs], settings,
                                          output_activation="identity")
        self.out_activation_ = "identity"


class _StoppingRule(Callback):
    """scikit-learn's end of a stochastic epoch (its ``_update_no_improvement_count`` and schedules).

    Records ``loss_curve_`` (the epoch's training loss plus the L2 penalty), and counts
    the epochs in a row whose training loss did not fall below the best by more than
    ``tol`` (with ``early_stopping``: whose validation score, accuracy or R^2, did not
    rise above the best by ``tol``, keeping the best epoch's parameters).  Then the
    learning-rate schedule: ``invscaling`` sets the rate to
    ``learning_rate_init / (t_ + 1) ** power_t``.  When the count exceeds
    ``n_iter_no_change``, training stops (``converged``), except that ``adaptive`` SGD
    first divides its rate by 5 and starts counting again, until the rate is at most 1e-6.
    """

    def __init__(self, estimator: _BaseMLP, n_samples: int, batch_size: int, l2: bool):
        self.estimator, self.n_samples = estimator, n_samples
        #: the L2 penalty per sample of an epoch, as scikit-learn adds it: alpha/2 ||W||^2 per batch
        #: (none for AdamW, whose decay is no term of the loss)
        self.penalty = 0.5 * estimator._alpha() * (-(-n_samples // batch_size)) / n_samples if l2 else 0.0
        #: a regressor's loss is averaged over its outputs, as scikit-learn's squared_loss is
        self.loss_scale = 1.0 / estimator._outputs if estimator._task == "regression" else 1.0
        self.converged = False
        #: with ``early_stopping``: (X_val, class indices), scored by the estimator's own predict
        self.validation = None

    def on_epoch_end(self, epoch, logs=None):
        est, network = self.estimator, self.network
        xp = network.backend.xp
        with network.backend.device():
            squares = sum(float(xp.vdot(W, W)) for W in network.weights) if self.penalty else 0.0
        est.loss_ = logs["loss"] * self.loss_scale + self.penalty * squares
        est.loss_curve_.append(est.loss_)
        est.n_iter_ += 1
        est.t_ += self.n_samples
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        if est.early_stopping:
            score = est._validation_score(*self.validation)
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            improved = not score < est.best_validation_score_ + est.tol
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_params = to_numpy(network.params).copy()
        else:
            improved = not est.loss_ > est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, est.loss_)
        est._no_improvement_count = 0 if improved else est._no_improvement_count + 1
        sgd = est.solver == "sgd"
        if sgd and est.learning_rate == "invscaling":
            network.optimizer.lr = float(est.learning_rate_init) / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if est.early_stopping else "Training loss"
            message = f"{what} did not improve more than tol={est.tol:f} for {est.n_iter_no_change} consecutive epochs."
            if sgd and est.learning_rate == "adaptive" and network.optimizer.lr > MIN_ADAPTIVE_RATE:
                network.optimizer.lr /= ADAPTIVE_DIVISOR
                est._no_improvement_count = 0
                if est.verbose:
                    print(f"{message} Setting learning rate to {network.optimizer.lr:f}")
                return
            if est.verbose:
                print(f"{message} Stopping." if not (sgd and est.learning_rate == "adaptive")
                      else f"{message} Learning rate too small. Stopping.")
            self.converged = True
            network.stop_training = True
