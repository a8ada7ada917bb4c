"""Click parameter types shared by gpunn's commands.

click's ``FloatRange`` lets ``nan`` through (every comparison with NaN is false) and
takes ``1e309`` as infinity; :class:`FiniteRange` refuses both as usage errors.
:class:`LayerSizes` reads ``--layers`` (``train`` and ``explain``).  :func:`choice` takes a
choice in any case; :func:`suggest_option` names gpunn's option for a common spelling of it.
"""

from __future__ import annotations

import math

import click

from gpunn.limits import MAX_LAYERS, MAX_UNITS


class FiniteRange(click.FloatRange):
    """A float in a range that must also be a finite number (no nan, no inf)."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class LayerSizes(click.ParamType):
    """``784,30,10``; ``,30,`` or ``30`` leave the input and output sizes to the data."""

    name = "SIZES"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        parts = [p.strip() for p in str(value).split(",")]
        if len(parts) == 1:  # only hidden layers given, e.g. "30"
            parts = ["", parts[0], ""]
        sizes = []
        for i, part in enumerate(parts):
            if part == "" and i in (0, len(parts) - 1):
                sizes.append(None)
                continue
            # ASCII digits only: str.isdigit() also takes superscripts and other scripts' digits
            if not (part.isascii() and part.isdigit()) or len(part) > 10 or not 1 <= int(part) <= MAX_UNITS:
                self.fail(f"{value!r:.60}: each layer size must be a positive integer up to {MAX_UNITS:,}, "
                          f"e.g. 784,30,10", param, ctx)
            sizes.append(int(part))
        if len(sizes) < 2:
            self.fail(f"{value!r}: give at least an input and an output size, e.g. 64,10", param, ctx)
        if len(sizes) > MAX_LAYERS:
            self.fail(f"{len(sizes)} layers: at most {MAX_LAYERS} (input and output included); sigmoid networks "
                      f"stop learning long before that depth", param, ctx)
        return sizes


#: Spellings users type for gpunn's options (other libraries' names, underscores, singulars), and gpunn's own.
COMMON_SPELLINGS = {
    "--learning-rate": "--lr", "--learningrate": "--lr", "--eta": "--lr", "--rate": "--lr",
    "--epoch": "--epochs", "--n-epochs": "--epochs", "--num-epochs": "--epochs", "--max-iter": "--epochs",
    "--batch": "--batch-size", "--batchsize": "--batch-size", "--minibatch": "--batch-size",
    "--hidden": "--layers", "--hidden-layers": "--layers", "--hidden-layer-sizes": "--layers", "--sizes": "--layers",
    "--layer": "--layers", "--data": "--dataset", "--input": "--dataset", "--out": "--output", "--save": "--output",
    "--model": "--output", "--labels": "--label", "--target": "--label", "--label-column": "--label",
    "--test-size": "--test-split", "--validation-split": "--test-split", "--val-split": "--test-split",
    "--act": "--activation", "--activations": "--activation", "--optim": "--optimizer", "--opt": "--optimizer",
    "--solver": "--optimizer", "--device": "--backend", "--gpu": "--backend", "--random-state": "--seed",
    "--alpha": "--weight-decay", "--l2": "--weight-decay", "--scaling": "--scale", "--scaler": "--scale",
}


def suggest_option(exc: click.NoSuchOption) -> click.NoSuchOption:
    """``exc`` with gpunn's own option as the suggestion when the unknown option is a common spelling of it
    (``--learning-rate`` for ``--lr``) or differs from it only in underscores; else ``exc`` as it was."""
    if exc.ctx is None:
        return exc
    known = {name for param in exc.ctx.command.params for name in getattr(param, "opts", [])}
    typed = exc.option_name.split("=", 1)[0]
    for candidate in (COMMON_SPELLINGS.get(typed.replace("_", "-").lower()), typed.replace("_", "-").lower()):
        if candidate in known and candidate != typed:
            # click keeps only the possibilities difflib finds close, so the message says it itself
            return click.NoSuchOption(exc.option_name, f"No such option {typed!r}. Did you mean {candidate!r}?",
                                      ctx=exc.ctx)
    return exc


def choice(values) -> click.Choice:
    """One of ``values``, typed in any case (``--activation ReLU``, ``--optimizer Adam``); the value as listed."""
    return click.Choice(list(values), case_sensitive=False)
