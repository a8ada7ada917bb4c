"""Click parameter types shared by gpunn's commands.

click's ``FloatRange`` lets ``nan`` through (every comparison with NaN is false) and
takes ``1e309`` as infinity; :class:`FiniteRange` refuses both as usage errors.
:class:`LayerSizes` reads ``--layers`` (``train`` and ``explain``).
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
