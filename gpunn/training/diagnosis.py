"""Telling a run that learns from one that is stuck, early and in words.

A sigmoid network whose step size is too large for its width drives its output (or
hidden) units into the flat tails of the sigmoid; a ReLU network can kill all its
units; after that the network gives the same answer whatever the input, its loss
sticks at the level of those saturated outputs, and it rarely recovers.  Such a run
must never read like a normal one that happened to score badly.

:class:`CollapseWatch` looks at the first two epochs of every ``fit``: after each, it
feeds a fixed probe of up to :data:`PROBE_SAMPLES` training samples forward and
measures how much each output unit varies across them.  The network counts as flat
when no output varies by more than :data:`FLAT_OUTPUT_SPREAD` (it ignores its input)
and its training accuracy is no better than always answering the most common class
(training data of a single class is never diagnosed: there, that answer is right).
A regression network has no accuracy: it counts as flat when its outputs do not vary
and its loss is no better than always answering the mean target (on the
standardised targets training sees, 1/2 per output unit: :data:`MEAN_ANSWER_LOSS`).
A run is diagnosed as stuck when the network is flat after both of its first two
epochs (or, for a one-epoch ``fit``, at its end): a one-line diagnosis naming the
option that fixes it.  (A flat network can escape its plateau later, which happens
with step sizes just below the collapse; it was still stuck for those epochs, and the
wording says "stuck ... may not recover", not "dead".)  A loss that
becomes NaN is an error instead (:class:`gpunn.errors.TrainingDiverged`), with the
same advice.

Cost: one forward pass over the probe after each of the first two epochs.
"""

from __future__ import annotations

import numpy as np

from gpunn.compute.backend import to_numpy

PROBE_SAMPLES = 64
#: Largest spread (max - min over the probe) of every output for the network to count as flat.
FLAT_OUTPUT_SPREAD = 1e-3
#: How far above the majority-class share the accuracy may be and still count as chance.
CHANCE_MARGIN = 0.02
EPOCHS_WATCHED = 2
#: The squared-error loss per sample and output of always answering the mean (standardised) target.
MEAN_ANSWER_LOSS = 0.5


class CollapseWatch:
    """Diagnoses a run whose network no longer depends on its input (see the module docstring)."""

    def __init__(self, network, X, y, epochs: int, optimizer: str, settings: dict):
        self.network = network
        self.optimizer, self.settings = optimizer, settings
        self.last_watched = min(epochs, EPOCHS_WATCHED) - 1
        self.regression = network.task == "regression"
        if self.regression:
            self.majority_share = 0.0  # unused: regression is judged by its loss
            constant = len(y) < 2 or bool(np.all(np.ptp(np.asarray(to_numpy(y), np.float64), axis=0) == 0))
        elif network.multilabel:  # not watched: a constant answer can be right for many labels at once
            self.majority_share, constant = 1.0, True
        else:
            labels = network.label_indices(y, len(y))
            self.majority_share = np.bincount(labels).max() / len(labels) if len(labels) else 1.0
            constant = self.majority_share == 1.0
        if constant:  # one class only: the same answer for every input is the right one
            self.last_watched = -1
        self.probe = to_numpy(X[:PROBE_SAMPLES])

    def check(self, epoch_in_run: int, logs: dict) -> str | None:
        """After the ``epoch_in_run``-th epoch of this fit (0-based): a diagnosis, or None."""
        if epoch_in_run > self.last_watched or len(self.probe) < 2:
            return None
        if not self._flat(logs):
            self.last_watched = -1  # it learns: nothing more to watch
            return None
        if epoch_in_run < self.last_watched:
            return None
        level = ("no better than answering the mean target" if self.regression
                 else f"train accuracy {logs['accuracy']:.3f}: chance level")
        return (f"training is stuck and may not recover: after epoch {self.network.epochs_done} the network "
                f"gives the same output for every input (loss {logs['loss']:.4g}, {level}); {self.advice()}")

    def _flat(self, logs: dict) -> bool:
        if self.regression:
            mean_answer = MEAN_ANSWER_LOSS * self.network.sizes[-1]
            if logs["loss"] < mean_answer * (1 - CHANCE_MARGIN):  # NaN is not below: it counts as flat
                return False
        elif logs["accuracy"] > self.majority_share + CHANCE_MARGIN:
            return False
        with np.errstate(all="ignore"):  # saturated or overflowing outputs are what is being looked for
            outputs = self.network.predict_proba(self.probe)
        spread = float(np.max(outputs.max(axis=0) - outputs.min(axis=0)))
        return not spread > FLAT_OUTPUT_SPREAD  # NaN outputs count as flat too

    def advice(self) -> str:
        """What to change, for this run's optimizer and activation."""
        lr, decay = self.settings["lr"], self.settings.get("weight_decay") or 0.0
        if self.optimizer != "adamw" and lr * decay >= 1:
            return (f"lower the weight decay (--weight-decay / weight_decay=, now {decay:g}): times the learning "
                    f"rate {lr:g} it moves every weight past zero at each step")
        if self.optimizer == "sgd" and self.settings.get("layer_rates") is None:
            fix = (f"lower the learning rate (--lr / lr=, now {lr:g}), or leave it out so that each layer gets "
                   f"a step size scaled to its width (--lr-scaling fan_in)")
        else:
            fix = f"lower the learning rate (--lr / lr=, now {lr:g})"
        if self.network.activation == "sigmoid" and self.network.init == "normal":
            fix += ", or use --init scaled"
        return fix
