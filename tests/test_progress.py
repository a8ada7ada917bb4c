"""The training progress bar: click's, over the whole run, with an ETA; off unless stderr is a terminal."""

import io
import itertools
import re

from click.testing import CliRunner

from gpunn.cli.main import cli
from gpunn.cli.progress import RunProgress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def train_through(progress, epochs, steps):
    """What fit and the epoch logger do: steps reported, the bar cleared for a line, the epoch's end."""
    with progress:
        for epoch in range(epochs):
            for step in range(steps):
                progress(step, steps)
            progress.clear()
            print(f"epoch {epoch + 1} line", file=progress.file)
            progress.on_epoch_end(epoch)


def test_bar_counts_every_step_of_the_run_with_an_eta(monkeypatch):
    clock = itertools.count(1000.0, 1.0)  # one second per reading: the ETA is known at once
    monkeypatch.setattr("time.time", lambda: next(clock))
    terminal = Terminal()
    train_through(RunProgress(enabled=True, epochs=3, file=terminal), epochs=3, steps=4)
    frames = terminal.getvalue().split("\r")
    assert any("1/12" in f and "epoch 1/3" in f for f in frames)  # counted over all 3 epochs
    assert any("8/12" in f and "epoch 3/3" in f for f in frames)
    assert any(re.search(r"6/12 +50% +\d\d:\d\d:\d\d", f) for f in frames)  # percent and ETA of the whole run
    assert "12/12" in frames[-1] and "done" in frames[-1]  # the bar stays, full, below the last line
    lines = terminal.getvalue().splitlines()
    assert [line.strip() for line in lines if "line" in line] == ["epoch 1 line", "epoch 2 line", "epoch 3 line"]
    assert terminal.getvalue().endswith("\n")


def test_nothing_but_the_lines_when_stderr_is_no_terminal():
    pipe = io.StringIO()
    train_through(RunProgress(enabled=True, epochs=2, file=pipe), epochs=2, steps=5)
    assert pipe.getvalue() == "epoch 1 line\nepoch 2 line\n"
    terminal = Terminal()
    train_through(RunProgress(enabled=False, epochs=2, file=terminal), epochs=2, steps=5)  # --quiet, --json
    assert terminal.getvalue() == "epoch 1 line\nepoch 2 line\n"


def test_train_in_a_pipe_prints_epoch_lines_only():
    result = CliRunner().invoke(cli, ["train", "--epochs", "2", "--layers", "64,8,10", "--backend", "numpy"])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr and "training  [" not in result.stderr  # no bar
    assert len([line for line in result.stderr.splitlines() if line.startswith("epoch ")]) == 2
