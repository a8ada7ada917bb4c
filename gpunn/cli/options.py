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
