"""What a page may ask the playground for, checked before anything is built.

The page sends its whole state as one JSON object (the same one its URL holds);
:func:`parse` turns it into :class:`Settings` or raises :class:`SettingsError` with one
line that names the setting and says what it accepts.  The bounds are gpunn's own
(:mod:`gpunn.limits`, and the memory check when the network is built); the playground
adds only :data:`MAX_POINTS` for its generated data sets.

What gpunn itself cannot do is refused here rather than imitated: L1 regularisation
(gpunn's optimizers have L2 weight decay only), a ``linear`` hidden activation and
regression unless the installed gpunn offers them (:func:`capabilities`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gpunn.compute.ops import ACTIVATIONS, OUTPUT_ACTIVATIONS
from gpunn.errors import GpunnError
from gpunn.limits import MAX_BATCH_SIZE, MAX_LAYERS, MAX_LR, MAX_SEED, MAX_UNITS, MAX_WEIGHT_DECAY, decay_problem
from gpunn.nn.parameters import INITS
from gpunn.playground.datasets import CLASSIFICATION, FEATURES, REGRESSION

#: Most points a generated data set may have.
MAX_POINTS = 100_000
DATASETS = (*CLASSIFICATION, *REGRESSION, "digits", "csv")
OPTIMIZERS = ("sgd", "adam")
REGULARIZATIONS = ("none", "L2", "L1")


class SettingsError(GpunnError, ValueError):
    """A setting the page sent that cannot be used; the message names it."""


def capabilities() -> dict:
    """What the installed gpunn can train, for the page to offer (and for :func:`parse` to accept)."""
    linear = "identity" in ACTIVATIONS
    regression = "identity" in OUTPUT_ACTIVATIONS
    notices = {}
    if not linear:
        notices["linear"] = "gpunn's hidden layers are sigmoid, tanh or relu; a linear hidden layer is not in gpunn"
    if not regression:
        notices["regression"] = "regression needs gpunn's identity output layer, which this gpunn does not have yet"
    notices["L1"] = "gpunn's optimizers have L2 weight decay only, so L1 is not offered"
    return {
        "activations": [name for name in ACTIVATIONS if name != "identity"] + (["linear"] if linear else []),
        "regression": regression,
        "datasets": list(CLASSIFICATION) + (list(REGRESSION) if regression else []) + ["digits", "csv"],
        "features": list(FEATURES),
        "inits": ["default", *INITS],
        "optimizers": list(OPTIMIZERS),
        "regularizations": ["none", "L2"],
        "notices": notices,
    }


@dataclass
class Settings:
    """One page's choices; see :func:`parse` for each field's range."""

    dataset: str = "circle"
    noise: float = 0.0  #: 0 to 0.5
    train_fraction: float = 0.5
    points: int = 500
    features: list = field(default_factory=lambda: ["x1", "x2"])
    hidden: list = field(default_factory=lambda: [4, 2])
    activation: str = "tanh"
    init: str = "default"
    optimizer: str = "sgd"
    lr: float = 0.03
    momentum: float = 0.0
    batch: int = 10
    regularization: str = "none"
    reg_rate: float = 0.0
    seed: int = 0
    surface: tuple = (0, 1)  #: the two data columns the pictures span (user data with more than two)

    @property
    def problem(self) -> str:
        return "regression" if self.dataset in REGRESSION else "classification"

    @property
    def weight_decay(self) -> float:
        return self.reg_rate if self.regularization == "L2" else 0.0


def parse(raw) -> Settings:
    """Settings from the page's JSON object; SettingsError naming the first bad one."""
    if not isinstance(raw, dict):
        raise SettingsError("the settings must be a JSON object")
    caps = capabilities()
    known = set(Settings.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r:.40}; known: {', '.join(sorted(known))}")
    s = Settings()
    s.dataset = _choice(raw, "dataset", s.dataset, DATASETS)
    if s.dataset in REGRESSION and not caps["regression"]:
        raise SettingsError(f"dataset {s.dataset}: {caps['notices']['regression']}")
    s.noise = _number(raw, "noise", s.noise, 0.0, 0.5)
    s.train_fraction = _number(raw, "train_fraction", s.train_fraction, 0.1, 0.9)
    s.points = _integer(raw, "points", s.points, 4, MAX_POINTS)
    s.features = _features(raw.get("features", s.features))
    s.hidden = _hidden(raw.get("hidden", s.hidden))
    s.activation = _choice(raw, "activation", s.activation, ("sigmoid", "tanh", "relu", "linear"))
    if s.activation not in caps["activations"]:
        raise SettingsError(f"activation linear: {caps['notices']['linear']}")
    s.init = _choice(raw, "init", s.init, ("default", *INITS))
    s.optimizer = _choice(raw, "optimizer", s.optimizer, OPTIMIZERS)
    s.lr = _number(raw, "lr", s.lr, 0.0, MAX_LR, low_open=True)
    s.momentum = _number(raw, "momentum", s.momentum, 0.0, 1.0, high_open=True)
    if s.momentum and s.optimizer != "sgd":
        raise SettingsError("momentum is SGD's; Adam keeps its own moving averages (set momentum to 0)")
    s.batch = _integer(raw, "batch", s.batch, 1, MAX_BATCH_SIZE)
    s.regularization = _choice(raw, "regularization", s.regularization, REGULARIZATIONS)
    if s.regularization == "L1":
        raise SettingsError(f"regularization L1: {caps['notices']['L1']}; use L2 or none")
    s.reg_rate = _number(raw, "reg_rate", s.reg_rate, 0.0, MAX_WEIGHT_DECAY)
    if s.optimizer == "sgd" and s.weight_decay:
        problem = decay_problem(s.lr, s.momentum, s.weight_decay)
        if problem:
            raise SettingsError(problem.replace("--lr", "learning rate").replace("--weight-decay", "L2 rate"))
    s.seed = _integer(raw, "seed", s.seed, 0, MAX_SEED)
    surface = raw.get("surface", list(s.surface))
    if not (isinstance(surface, list) and len(surface) == 2):
        raise SettingsError("surface must be two column numbers, e.g. [0, 1]")
    s.surface = tuple(_integer({"surface": v}, "surface", 0, 0, MAX_UNITS) for v in surface)
    if s.surface[0] == s.surface[1]:
        raise SettingsError("surface: pick two different columns for the picture's axes")
    return s


def _choice(raw, name, default, allowed):
    value = raw.get(name, default)
    if value not in allowed:
        raise SettingsError(f"{name} {value!r:.40} is not one of {', '.join(allowed)}")
    return value


def _number(raw, name, default, low, high, low_open=False, high_open=False) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(f"{name} must be a number, got {value!r:.40}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise SettingsError(f"{name} must be a finite number in {bounds}, got {value!r}")
    return value


def _integer(raw, name, default, low, high) -> int:
    value = raw.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{name} must be a whole number, got {value!r:.40}")
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low:,} and {high:,}, got {value:,}")
    return value


def _features(value) -> list:
    if not isinstance(value, list) or not value:
        raise SettingsError(f"features must be a non-empty list of {', '.join(FEATURES)}")
    for name in value:
        if name not in FEATURES:
            raise SettingsError(f"feature {name!r:.40} is not one of {', '.join(FEATURES)}")
    if len(set(value)) != len(value):
        raise SettingsError("features: each feature at most once")
    return [name for name in FEATURES if name in value]  # the page's order, whatever the list's


def _hidden(value) -> list:
    if not isinstance(value, list):
        raise SettingsError("hidden must be a list of layer widths, e.g. [4, 2]")
    if len(value) > MAX_LAYERS - 2:
        raise SettingsError(f"hidden: at most {MAX_LAYERS - 2} hidden layers, got {len(value)}")
    return [_integer({"hidden": width}, "hidden", 0, 1, MAX_UNITS) for width in value]
