"""Training progress on stderr: click's own progress bar over the whole run, and lines above it.

The bar counts the minibatch steps of every epoch to be trained, so its ETA is for the
whole run (click averages the time per step since the start, validation included), and
it names the epoch under way.  Lines such as the per-epoch summaries go above it: the
bar is cleared before them (:meth:`RunProgress.clear`, the epoch logger's ``before_line``)
and drawn again after the epoch (:meth:`RunProgress.on_epoch_end`, so put it after the
logger).  The bar is drawn only when stderr is a terminal: in a pipe, a log file or a
test runner only the lines are printed.
"""

from __future__ import annotations

import sys

import click

from gpunn.training.callbacks import Callback

BAR_WIDTH = 30


class RunProgress(Callback):
    """``fit``'s ``progress(step, steps)`` callback, drawing one bar for ``epochs`` epochs, and a
    callback that moves it on at each epoch's end.

    Use as a context manager around training (the bar is closed, and the terminal's cursor
    shown again, even when training fails).  ``enabled=False`` (``--quiet``, ``--json``)
    draws nothing.  The bar is made at the first step, when the number of steps per epoch
    is known.
    """

    def __init__(self, enabled: bool, epochs: int, file=None):
        self.file = file if file is not None else sys.stderr
        self.enabled = enabled and self.file.isatty()
        self.epochs = epochs
        self.epoch = 0  # epochs finished in this run
        self.steps = None
        self.bar = None

    def __enter__(self) -> "RunProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
            self.bar = None

    def __call__(self, step: int, steps: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.steps = steps
            self.bar = click.progressbar(length=self.epochs * steps, label="training", file=self.file,
                                         show_eta=True, show_pos=True, show_percent=True, width=BAR_WIDTH,
                                         item_show_func=lambda item: item)
            self.bar.__enter__()
        self._advance(self.epoch * steps + step + 1)

    def on_epoch_end(self, epoch, logs=None):
        """Move the bar to the end of the epoch just trained (its last step is not always reported)."""
        self.epoch += 1
        if self.bar is not None:
            self._advance(self.epoch * self.steps)
            self.bar.render_progress()  # the label changed even when the position did not

    def clear(self) -> None:
        """Blank the bar's line, so that a line can be printed in its place (it comes back at the next step)."""
        if self.bar is not None:
            click.echo("\r" + " " * (self.bar.max_width or 0) + "\r", file=self.file, nl=False)

    def _advance(self, position: int) -> None:
        label = f"epoch {self.epoch + 1}/{self.epochs}" if self.epoch < self.epochs else "done"
        self.bar.update(max(0, position - self.bar.pos), current_item=label)
