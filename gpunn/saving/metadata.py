"""The rules a model file's metadata must follow, one table for reading and writing alike.

:func:`gpunn.saving.model_file.read` checks the JSON it reads with :func:`check`, and
:func:`gpunn.saving.model_file.save` checks the JSON it is about to write with the same function,
so that what ``save`` writes ``load`` accepts, and a file ``load`` accepts ``save``
can write back.  Each field has one rule in :data:`METADATA_RULES` (nested fields in
the tables it refers to): its type and its range, including the NaN and Infinity
that Python's JSON reads.  To add a field, add its rule there.

:func:`decode` bounds the nesting depth before parsing (a file of 100,000 nested
brackets would otherwise exhaust Python's recursion) and maps every parse failure
to :class:`Invalid`, whose message names the field (``training.lr must be ...``).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from gpunn.limits import MAX_UNITS
from gpunn.nn.parameters import DTYPES, INITS
from gpunn.compute.ops import ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS, objective
from gpunn.training.optim import LR_SCALINGS, OPTIMIZERS
from gpunn.nn.preprocessing import METHODS, SCALINGS

FORMAT_NAME = "gpunn-model"
#: Format 2 added the activations, the optimizers and their state, the classes and the scaling;
#: format 3 regression networks (the identity output layer and ``targets``, the targets' standardisation)
#: and ``multilabel`` networks.
FORMAT_VERSION = 3

#: Deepest nesting of lists and dicts in the metadata (the format itself needs 4; the rest is ``extra``'s).
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


class Invalid(Exception):
    """One problem with the metadata: the field's path (``training.lr``) and what is wrong with it."""

    def __init__(self, problem: str, path: tuple = ()):
        super().__init__(problem)
        self.problem, self.path = problem, tuple(path)

    def within(self, key) -> "Invalid":
        return Invalid(self.problem, (key, *self.path))

    def __str__(self) -> str:
        return f"{'.'.join(map(str, self.path))} {self.problem}" if self.path else self.problem


def decode(raw: bytes):
    """The JSON value in ``raw``, refusing nesting deeper than MAX_JSON_DEPTH before parsing."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(_one_line(exc)) from None
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise Invalid(f"it nests {depth} levels deep, more than the {MAX_JSON_DEPTH} allowed")
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and numbers longer than Python converts
        raise Invalid(_one_line(exc)) from None


def _json_depth(text: str) -> int:
    """How deep the brackets outside strings nest (counted in C, not by recursion)."""
    skeleton = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8"), dtype=np.uint8)
    steps = np.isin(skeleton, _OPENERS).astype(np.int64) - np.isin(skeleton, _CLOSERS)
    return int(np.cumsum(steps).max(initial=0))


_OPENERS = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSERS = np.frombuffer(b"]}", dtype=np.uint8)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


def show(value) -> str:
    """A short one-line rendering of a (possibly huge or hostile) value for a message."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(low: int, high: int):
    def check(value):
        if not (is_int(value) and low <= value <= high):
            raise Invalid(f"must be an integer from {low} to {high}, got {show(value)}")
    return check


def _real(low: float, high: float, low_open: bool = False, high_open: bool = False):
    """A finite number in the interval; JSON's NaN and Infinity are refused."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(value):
        if not (_is_number(value) and math.isfinite(value)
                and (low < value if low_open else low <= value) and (value < high if high_open else value <= high)):
            raise Invalid(f"must be a finite number in {interval}, got {show(value)}")
    return check


def _one_of(allowed):
    def check(value):
        if value not in allowed or not isinstance(value, str):
            raise Invalid(f"must be one of {', '.join(allowed)}, got {show(value)}")
    return check


def _boolean(value):
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, got {show(value)}")


def _list_of(rule, length: int | None = None, what: str = "values"):
    def check(value):
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise Invalid(f"must be a list of {length or 'some'} {what}, got {show(value)}")
        for index, item in enumerate(value):
            try:
                rule(item)
            except Invalid as exc:
                raise exc.within(index) from None
    return check


def _classes(value):
    """What each output unit stands for: all integers or all (short) strings, distinct and sorted."""
    if not isinstance(value, list) or not value:
        raise Invalid(f"must be a list of classes, got {show(value)}")
    if not (all(is_int(v) for v in value) or all(isinstance(v, str) and len(v) <= 1000 for v in value)):
        raise Invalid(f"must be all integers or all strings, got {show(value)}")
    if any(a >= b for a, b in zip(value, value[1:])):
        raise Invalid(f"must be distinct and sorted, got {show(value)}")


def _text(value):
    if not isinstance(value, str) or len(value) > 100:
        raise Invalid(f"must be a short string, got {show(value)}")


def _anything(value):
    """``extra``: whatever JSON the caller stored (its depth is bounded by MAX_JSON_DEPTH)."""


def _sizes(value):
    if not (isinstance(value, list) and len(value) >= 2 and all(is_int(s) and 1 <= s <= MAX_UNITS for s in value)):
        raise Invalid(f"must be a list of at least two layer sizes from 1 to {MAX_UNITS}, got {show(value)}")


def _mapping(rules: dict, required=()):
    """A dict whose keys are among ``rules`` (each value checked by its rule), ``required`` ones present."""
    def check(value):
        if not isinstance(value, dict):
            raise Invalid(f"must be a mapping of {', '.join(rules)}, got {show(value)}")
        _check_fields_of(value, rules, required)
    return check


def _optional(rule):
    def check(value):
        if value is not None:
            rule(value)
    return check


def _check_fields_of(mapping: dict, rules: dict, required) -> None:
    for key in required:
        if key not in mapping:
            raise Invalid("is missing", (key,))
    for key, value in mapping.items():
        if key not in rules:
            raise Invalid("is not a field of a gpunn model", (show(key),))
        try:
            rules[key](value)
        except Invalid as exc:
            raise exc.within(key) from None


#: The training options of the saved run, as fit took them (the command line narrows them, see gpunn.limits).
_LR = _real(0, math.inf, low_open=True, high_open=True)
_MOMENTUM = _real(0, 1, high_open=True)
_WEIGHT_DECAY = _real(0, math.inf, high_open=True)
_BETAS = _list_of(_real(0, 1, high_open=True), 2, "decay rates in [0, 1)")
_EPS = _real(0, math.inf, low_open=True, high_open=True)
TRAINING_RULES = {"lr": _LR, "momentum": _MOMENTUM, "weight_decay": _WEIGHT_DECAY,
                  "batch_size": _integer(1, 2**63 - 1), "optimizer": _one_of(OPTIMIZERS), "nesterov": _boolean,
                  "betas": _BETAS, "eps": _EPS, "lr_scaling": _optional(_one_of(LR_SCALINGS))}
#: Each optimizer's settings (gpunn.training.optim.Optimizer.settings) and which of them a file must hold
#: (format 1 saved SGD's first four only).
OPTIMIZER_RULES = {
    "sgd": ({"name": _one_of(OPTIMIZERS), "lr": _LR, "momentum": _MOMENTUM, "weight_decay": _WEIGHT_DECAY,
             "nesterov": _boolean, "layer_rates": _optional(_list_of(_LR, what="positive rates"))},
            ("name", "lr", "momentum", "weight_decay")),
    "adam": ({"name": _one_of(OPTIMIZERS), "lr": _LR, "betas": _BETAS, "eps": _EPS, "weight_decay": _WEIGHT_DECAY},
             ("name", "lr", "betas", "eps", "weight_decay")),
}
OPTIMIZER_RULES["adamw"] = OPTIMIZER_RULES["adam"]


def _optimizer(value):
    if not isinstance(value, dict):
        raise Invalid(f"must be a mapping of an optimizer's settings, got {show(value)}")
    name = value.get("name")
    if not (isinstance(name, str) and name in OPTIMIZER_RULES):
        raise Invalid(f"must be one of {', '.join(OPTIMIZERS)}, got {show(name)}", ("name",))
    rules, required = OPTIMIZER_RULES[name]
    _mapping(rules, required)(value)


#: Metrics every trained epoch records, and metrics recorded together or not at all, by task.
REQUIRED_METRICS = {"classification": ("loss", "accuracy", "seconds"), "regression": ("loss", "seconds")}
PAIRED_METRICS = {"classification": ("val_loss", "val_accuracy"), "regression": ("val_loss", "val_r2")}


def _history(value):
    _mapping({"epoch": _epochs, "history": _metrics, "params": _history_params,
              "warnings": _list_of(_text_line, what="warnings")},
             required=("epoch", "history", "params"))(value)
    epochs, metrics = len(value["epoch"]), value["history"]
    for key, values in metrics.items():
        if len(values) != epochs:
            raise Invalid(f"has {len(values)} values for {epochs} epochs: every metric needs one value per epoch "
                           f"(was fit called both with and without validation_data?)", ("history", key))


def _check_metrics(history: dict, task: str) -> None:
    """The metrics every epoch of a ``task`` network records are there, the paired ones together."""
    metrics = history["history"]
    if history["epoch"]:
        for key in REQUIRED_METRICS[task]:
            if key not in metrics:
                raise Invalid(f"is missing; every trained epoch of a {task} network records "
                              f"{', '.join(REQUIRED_METRICS[task])}", ("history", "history", key))
        paired = PAIRED_METRICS[task]
        if (paired[0] in metrics) != (paired[1] in metrics):
            raise Invalid(f"holds one of {' and '.join(paired)} without the other", ("history", "history"))


def _epochs(value):
    if not (isinstance(value, list) and all(is_int(e) and e >= 0 for e in value)
            and all(a < b for a, b in zip(value, value[1:]))):
        raise Invalid(f"must be increasing epoch numbers, got {show(value)}")


def _metrics(value):
    if not (isinstance(value, dict) and all(
            isinstance(values, list) and all(_is_number(v) for v in values) for values in value.values())):
        raise Invalid(f"must map metric names to lists of numbers, got {show(value)}")


def _history_params(value):
    """fit's options: those save copies into ``training`` follow its rules, the rest are plain values."""
    if not isinstance(value, dict):
        raise Invalid(f"must map option names to values, got {show(value)}")
    for key, option in value.items():
        if key in TRAINING_RULES:
            try:
                TRAINING_RULES[key](option)
            except Invalid as exc:
                raise exc.within(key) from None
        elif not (option is None or isinstance(option, (str, int, float))
                  or (isinstance(option, list) and all(_is_number(v) for v in option))):
            raise Invalid(f"must be a number, a string or a list of numbers, got {show(option)}", (key,))


def _targets(value):
    """A regression network's target standardisation: per output, a mean and a positive std; ndim 1 or 2."""
    _mapping({"mean": _list_of(_real(-math.inf, math.inf, True, True), what="finite means"),
              "std": _list_of(_real(0, math.inf, True, True), what="positive standard deviations"),
              "ndim": _integer(1, 2)}, required=("mean", "std", "ndim"))(value)


def _text_line(value):
    if not isinstance(value, str) or len(value) > 10_000:
        raise Invalid(f"must be a line of text, got {show(value)}")


#: Every field of the metadata and its rule; add a field here and both load and save check it.
METADATA_RULES = {
    "format": _one_of((FORMAT_NAME,)),
    "format_version": _integer(1, FORMAT_VERSION),
    "gpunn_version": _text,
    "sizes": _sizes,
    "activation": _one_of(ACTIVATIONS),
    "output_activation": _one_of(OUTPUT_ACTIVATIONS),
    "loss": _one_of(LOSSES),
    "init": _one_of(INITS),
    "dtype": _one_of(DTYPES),
    "seed": _integer(0, 2**64 - 1),
    "epochs_done": _integer(0, 2**63 - 1),
    "classes": _optional(_classes),
    "targets": _optional(_targets),
    "multilabel": _boolean,
    "scale": _mapping({"requested": _one_of(SCALINGS), "method": _optional(_one_of(METHODS))},
                      required=("requested", "method")),
    "training": _mapping(TRAINING_RULES),
    "optimizer": _optional(_optimizer),
    "history": _optional(_history),
    "extra": _anything,
}
#: The fields of format 1, which every file holds; format 2's others are optional (their defaults:
#: sigmoid layers, class indices, no scaling).
REQUIRED_FIELDS = ("format", "format_version", "gpunn_version", "sizes", "loss", "init", "dtype", "seed",
                   "epochs_done", "training", "optimizer", "history", "extra")


def check(metadata) -> None:
    """Check every field against METADATA_RULES, then what the fields say about each other."""
    if not isinstance(metadata, dict):
        raise Invalid(f"it must be a mapping, got {show(metadata)}")
    _check_fields_of(metadata, METADATA_RULES, required=REQUIRED_FIELDS)
    try:
        objective(metadata.get("output_activation", "sigmoid"), metadata["loss"])
    except ValueError as exc:
        raise Invalid(f"does not go with the output layer ({exc})", ("loss",)) from None
    classes = metadata.get("classes")
    if classes is not None and len(classes) != metadata["sizes"][-1]:
        raise Invalid(f"lists {len(classes)} classes for {metadata['sizes'][-1]} output units", ("classes",))
    regression = metadata.get("output_activation") == "identity"
    if metadata.get("multilabel") and (metadata.get("output_activation", "sigmoid"), metadata["loss"]) != (
            "sigmoid", "cross_entropy"):
        raise Invalid("is set, but a multilabel network has sigmoid outputs and the cross_entropy loss",
                      ("multilabel",))
    targets = metadata.get("targets")
    if regression and classes is not None:
        raise Invalid("are listed for a regression network (identity outputs), which has none", ("classes",))
    if targets is not None and not regression:
        raise Invalid("standardise a regression network's targets; this network classifies", ("targets",))
    if targets is not None and not len(targets["mean"]) == len(targets["std"]) == metadata["sizes"][-1]:
        raise Invalid(f"lists {len(targets['mean'])} means and {len(targets['std'])} standard deviations for "
                      f"{metadata['sizes'][-1]} output units", ("targets",))
    if targets is not None and targets["ndim"] == 1 and metadata["sizes"][-1] != 1:
        raise Invalid("say the targets were 1-D, but the network has several outputs", ("targets", "ndim"))
    rates = (metadata["optimizer"] or {}).get("layer_rates")
    if rates is not None and len(rates) != len(metadata["sizes"]) - 1:
        raise Invalid(f"lists {len(rates)} rates for {len(metadata['sizes']) - 1} layers", ("optimizer", "layer_rates"))
    history = metadata["history"]
    if history is not None:
        _check_metrics(history, "regression" if regression else "classification")
    if regression and history is not None and history["epoch"] and targets is None:
        raise Invalid("is missing: a trained regression network keeps its targets' standardisation", ("targets",))
    if history is not None and history["epoch"] and history["epoch"][-1] >= metadata["epochs_done"]:
        raise Invalid(f"records epoch {history['epoch'][-1] + 1} but epochs_done is {metadata['epochs_done']}",
                       ("history",))
