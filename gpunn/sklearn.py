"""``MLPClassifier``: gpunn as a scikit-learn estimator, under scikit-learn's own names.

Switch by changing an import (as with cuML's GPU estimators)::

    from gpunn.sklearn import MLPClassifier   # instead of sklearn.neural_network's

The parameters keep scikit-learn's names and defaults where the meaning is the same:
``hidden_layer_sizes=(100,)``, ``activation="relu"`` (``logistic``, ``tanh``, ``relu``),
``solver="adam"`` (``sgd``, ``adam``), ``alpha=1e-4``, ``batch_size="auto"``
(min(200, n_samples)), ``learning_rate="constant"``, ``learning_rate_init=1e-3``,
``max_iter=200``, ``shuffle``, ``random_state``, ``tol=1e-4``, ``verbose``,
``warm_start``, ``momentum=0.9``, ``nesterovs_momentum=True``, ``early_stopping``,
``validation_fraction=0.1``, ``beta_1``, ``beta_2``, ``epsilon``, ``n_iter_no_change=10``.
gpunn adds ``loss``, ``scale``, ``backend`` and ``dtype``.  A value gpunn cannot honour
(``activation="identity"``, ``solver="lbfgs"``, ``learning_rate="adaptive"``) is a
ValueError naming what is supported, raised by ``fit`` (parameters are stored verbatim
by ``__init__`` and checked in ``fit``, as scikit-learn's developer guide asks).

How it trains is scikit-learn's recipe on gpunn's network (:class:`gpunn.Network`):
softmax outputs with the categorical cross-entropy, one output unit per class (two for
a binary problem, so ``predict_proba`` rows always sum to 1), epochs of shuffled
minibatches, and scikit-learn's stopping rule (:class:`_StoppingRule`).  Where the two
differ, by design or by what gpunn's network offers:

* ``alpha`` is the L2 penalty ``alpha / (2 n_batch) ||W||^2`` of each minibatch, as in
  scikit-learn; gpunn applies it as the weight decay ``alpha / batch_size`` to every
  parameter, biases included (scikit-learn leaves biases alone), and a short last batch
  gets the full batch's decay.  ``loss_curve_`` adds the penalty as scikit-learn does,
  from the weights at the end of each epoch.  With ``solver="adamw"`` (gpunn's extra)
  ``alpha`` is AdamW's decoupled decay instead, ``theta *= 1 - learning_rate_init * alpha``
  at every step, and no term of ``loss_curve_``.
* Adam adds ``epsilon`` after the bias correction (PyTorch's order, see
  :mod:`gpunn.training.optim`), scikit-learn before it; the two agree as ``epsilon`` -> 0.
* The initial weights are gpunn's (He for relu, Glorot for tanh, LeCun for logistic,
  normal draws), not scikit-learn's uniform Glorot.
* ``loss="quadratic"`` (gpunn's extra) trains the tutorial's network instead: sigmoid
  outputs and the error 1/2 (t - y)^2; ``predict_proba`` then divides each row of
  outputs by its sum, which ranks the classes but is no calibrated probability.
* ``predict_proba`` and ``predict`` compute in float64 whatever ``dtype`` trained
  (:meth:`gpunn.Network.inference_copy`; scikit-learn computes in the dtype of X, float64
  by default).  In float32 a sample's answer could differ in its last bit with the other
  samples of the call: a BLAS adds a GEMM's edge columns in another order than the rest
  (OpenBLAS's Prescott kernel does), and scikit-learn asks answers that do not depend on
  the samples' order to 1e-7, below float32's resolution.  The validation score of
  ``early_stopping`` is this ``predict``'s accuracy, as scikit-learn's is its ``score``.
* No ``lbfgs``, no learning-rate schedules, no ``sample_weight``, no sparse input and
  no multilabel targets.

``fit`` trains one gpunn network (``network_``) on the class indices of ``classes_``,
so any labels scikit-learn accepts work (ints, strings, floats that are whole numbers,
...).  The estimator pickles and clones (a fitted network pickles as its model file,
see :meth:`gpunn.Network.__reduce__`).  Needs ``pip install "gpunn[sklearn]"``
(scikit-learn 1.6 or newer: ``validate_data`` and the estimator tags).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, unique_labels
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn is an optional extra
    raise ImportError(f'gpunn.sklearn needs scikit-learn 1.6 or newer ({exc}); install it with: '
                      f'pip install "gpunn[sklearn]"') from exc

from gpunn.compute.backend import to_numpy
from gpunn.training.callbacks import Callback
from gpunn.network import Network
from gpunn.training.optim import OPTIMIZERS
from gpunn.nn.preprocessing import SCALINGS

#: scikit-learn's activation names -> gpunn's.
ACTIVATIONS = {"logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: The output layer each ``loss`` trains (softmax + cross-entropy is scikit-learn's).
OUTPUTS = {"cross_entropy": "softmax", "quadratic": "sigmoid"}
#: scikit-learn's ``batch_size="auto"``: min(AUTO_BATCH, n_samples).
AUTO_BATCH = 200


def _one_of(name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        supported = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not supported by gpunn's MLPClassifier; use one of {supported}")


def _number(name: str, value, low, high=None, low_open=False, high_open=False, integer=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    above = value > low if low_open else value >= low
    below = high is None or (value < high if high_open else value <= high)
    if not (above and below):  # NaN is neither
        right = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {'(' if low_open else '['}{low}, {right}, got {value!r}")


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A multi-layer perceptron classifier trained by gpunn (see the module docstring).

    Attributes after ``fit``: ``classes_``, ``n_features_in_`` (and
    ``feature_names_in_`` for data frames), ``loss_``, ``loss_curve_`` (per epoch, L2
    penalty included), ``best_loss_``, ``validation_scores_`` and
    ``best_validation_score_`` (with ``early_stopping``), ``n_iter_`` (epochs of the
    latest ``fit``), ``t_`` (samples seen), ``n_layers_``, ``n_outputs_``,
    ``out_activation_``, ``network_`` (the trained :class:`gpunn.Network`, which answers
    with class indices), and ``coefs_`` / ``intercepts_`` (copies of its weights).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, loss="cross_entropy", scale="none", backend=None,
                 dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
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
        self.loss = loss
        self.scale = scale
        self.backend = backend
        self.dtype = dtype

    # -- scikit-learn's interface ----------------------------------------------------------------------
    def fit(self, X, y):
        """Train for up to ``max_iter`` epochs (anew, or on from the last fit with ``warm_start``)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``; the first call needs ``classes``, every label there will ever be."""
        first_call = not hasattr(self, "network_")
        if first_call and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if not first_call and classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call to partial_fit, "
                             f"{self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=classes if first_call else None)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, (samples, classes) in the order of ``classes_``; rows sum to 1."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._probabilities(X)

    def _probabilities(self, X) -> np.ndarray:
        """:meth:`predict_proba` of checked ``X``: the forward pass in float64 (see the module docstring)."""
        outputs = self.network_.inference_copy(np.float64).predict_proba(X)
        if self.network_.output_activation == "sigmoid":  # loss="quadratic": outputs scaled to sum to 1
            sums = outputs.sum(axis=1, keepdims=True)
            outputs = np.divide(outputs, sums, out=np.full_like(outputs, 1 / outputs.shape[1]), where=sums > 0)
        return outputs

    def predict_log_proba(self, X) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class of each sample, as a label of ``classes_``."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def to_onnx(self, path) -> None:
        """Write the fitted network as an ONNX model whose ``label`` output answers with ``classes_``.

        See :mod:`gpunn.saving.onnx_export`; ``classes_`` must be integers or strings.  The
        ``probabilities`` output is the network's: :meth:`predict_proba` for the default
        loss, the sigmoid outputs before their rows are scaled to sum 1 for ``loss="quadratic"``.
        """
        check_is_fitted(self)
        self.network_.to_onnx(path, classes=self.classes_)

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
        tags.input_tags.sparse = False
        return tags

    # -- training ----------------------------------------------------------------------------------------
    def _fit(self, X, y, incremental: bool, classes=None):
        settings = self._checked_settings()
        fresh = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        X, y = validate_data(self, X, y, reset=fresh, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self._set_classes(y, fresh, incremental, classes)
        labels = np.searchsorted(self.classes_, y)
        self._rng = check_random_state(self.random_state)
        if fresh:
            self._start(X.shape[1], settings)
        X_train, labels_train, validation = self._split(X, labels)
        n = X_train.shape[0]
        batch_size = self._batch_size(n)
        stopping = _StoppingRule(self, n, batch_size, l2=settings["solver"] != "adamw")
        network = self.network_
        options = self._optimizer_options(settings, batch_size)
        if not incremental:
            network.optimizer = None  # scikit-learn starts each fit with a fresh optimizer
        elif network.optimizer is not None and network.optimizer.name == settings["solver"]:
            network.optimizer.weight_decay = options["weight_decay"]  # a new batch size keeps the moments
        self.n_iter_ = 0
        stopping.validation = validation
        network.fit(X_train, labels_train, epochs=1 if incremental else self.max_iter, batch_size=batch_size,
                    callbacks=[stopping], shuffle=bool(self.shuffle), **options)
        if self.early_stopping:
            with network.backend.device():
                network.params[...] = network.backend.xp.asarray(self._best_params)
        if not incremental and not stopping.converged and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          f"optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        return self

    def _checked_settings(self) -> dict:
        """The parameters checked, as the Network's and the optimizer's settings; ValueError naming the fix."""
        _one_of("activation", self.activation, list(ACTIVATIONS))
        _one_of("solver", self.solver, OPTIMIZERS)
        _one_of("learning_rate", self.learning_rate, ["constant"])
        _one_of("loss", self.loss, list(OUTPUTS))
        _one_of("scale", self.scale, SCALINGS)
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
        _number("epsilon", self.epsilon, 0, low_open=True)
        _number("max_iter", self.max_iter, 1, integer=True)
        if self.n_iter_no_change != np.inf:
            _number("n_iter_no_change (an integer or np.inf)", self.n_iter_no_change, 1, integer=True)
        if self.early_stopping and not self.validation_fraction:
            raise ValueError("early_stopping=True needs a validation_fraction above 0, e.g. 0.1")
        try:
            dtype = None if self.dtype is None else np.dtype(self.dtype).name
        except TypeError:
            dtype = None
        _one_of("dtype", dtype if dtype in ("float32", "float64") else self.dtype, ["float32", "float64"])
        return {"hidden": [int(size) for size in hidden], "activation": ACTIVATIONS[self.activation],
                "solver": self.solver, "dtype": dtype}

    def _set_classes(self, y, fresh: bool, incremental: bool, classes) -> None:
        """``classes_`` from the first fit's labels (or partial_fit's ``classes``); later labels must be among them."""
        seen = unique_labels(y)
        if fresh:
            self.classes_ = seen if classes is None else unique_labels(classes)
        elif self.warm_start and not incremental and set(seen) != set(self.classes_):
            raise ValueError(f"warm_start can only be used where y has the same classes as in the previous call "
                             f"to fit: previously {self.classes_}, y has {seen}")
        unknown = np.setdiff1d(seen, self.classes_)
        if len(unknown):
            raise ValueError(f"y has classes not in classes_ {self.classes_}: {unknown}")

    def _start(self, n_features: int, settings: dict) -> None:
        """A new network and fresh training records."""
        sizes = [n_features, *settings["hidden"], len(self.classes_)]
        seed = (self.random_state if isinstance(self.random_state, numbers.Integral) and self.random_state >= 0
                else int(self._rng.randint(np.iinfo(np.int32).max)))
        self.network_ = Network(sizes, activation=settings["activation"], output_activation=OUTPUTS[self.loss],
                                loss=self.loss, backend=self.backend, dtype=settings["dtype"], seed=int(seed),
                                scale=self.scale, classes=np.arange(sizes[-1]))
        self.n_layers_ = len(sizes)
        self.n_outputs_ = sizes[-1]
        self.out_activation_ = "softmax" if self.loss == "cross_entropy" else "logistic"
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            self._best_params = to_numpy(self.network_.params).copy()
        else:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf

    def _split(self, X, labels):
        """The training part and, with early stopping, the validation data (stratified, as scikit-learn's)."""
        if not self.early_stopping:
            return X, labels, None
        X_train, X_val, y_train, y_val = train_test_split(X, labels, random_state=self._rng,
                                                          test_size=self.validation_fraction, stratify=labels)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your "
                             "dataset.")
        return X_train, y_train, (X_val, y_val)

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
                   "weight_decay": self.alpha if solver == "adamw" else self.alpha / batch_size}
        if solver == "sgd":
            momentum = float(self.momentum)
            return {**options, "momentum": momentum, "nesterov": bool(self.nesterovs_momentum) and momentum > 0,
                    "lr_scaling": "none"}
        return {**options, "betas": (self.beta_1, self.beta_2), "eps": self.epsilon}


class _StoppingRule(Callback):
    """scikit-learn's end of stochastic training, after every epoch (its ``_update_no_improvement_count``).

    Records ``loss_curve_`` (the epoch's training loss plus the L2 penalty), and counts
    the epochs in a row whose training loss did not fall below the best by more than
    ``tol`` (with ``early_stopping``: whose validation accuracy did not rise above the
    best by ``tol``, keeping the best epoch's parameters).  When that count exceeds
    ``n_iter_no_change``, training stops: ``converged``.
    """

    def __init__(self, estimator: MLPClassifier, n_samples: int, batch_size: int, l2: bool):
        self.estimator, self.n_samples = estimator, n_samples
        #: the L2 penalty per sample of an epoch, as scikit-learn adds it: alpha/2 ||W||^2 per batch
        #: (none for AdamW, whose decay is no term of the loss)
        self.penalty = 0.5 * estimator.alpha * (-(-n_samples // batch_size)) / n_samples if l2 else 0.0
        self.converged = False
        #: with ``early_stopping``: (X_val, class indices), scored by the estimator's own predict
        self.validation = None

    def on_epoch_end(self, epoch, logs=None):
        est, network = self.estimator, self.network
        xp = network.backend.xp
        with network.backend.device():
            squares = sum(float(xp.vdot(W, W)) for W in network.weights) if self.penalty else 0.0
        est.loss_ = logs["loss"] + self.penalty * squares
        est.loss_curve_.append(est.loss_)
        est.n_iter_ += 1
        est.t_ += self.n_samples
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        if est.early_stopping:
            X_val, y_val = self.validation
            score = float(np.mean(est._probabilities(X_val).argmax(axis=1) == y_val))
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
        if est._no_improvement_count > est.n_iter_no_change:
            if est.verbose:
                what = "Validation score" if est.early_stopping else "Training loss"
                print(f"{what} did not improve more than tol={est.tol:f} for {est.n_iter_no_change} consecutive "
                      f"epochs. Stopping.")
            self.converged = True
            network.stop_training = True
