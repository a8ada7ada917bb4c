"""Click parameter types shared by gpunn's commands.

click's ``FloatRange`` lets ``nan`` through (every comparison with NaN is false) and
takes ``1e309`` as infinity; :class:`FiniteRange` refuses both as usage errors.
"""

from __future__ import annotations

import math

import click


class FiniteRange(click.FloatRange):
    """A float in a range that must also be a finite number (no nan, no inf)."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


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
