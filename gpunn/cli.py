"""The ``gpunn`` command line: ``train``, ``info`` and the commands other modules add.

Errors the user can fix (bad options, bad data, no GPU) print one line,
``Error: ...``, and exit with status 2 (usage) or 1 (runtime); never a traceback.
"""

from __future__ import annotations

import json
import sys
import time

import click
import numpy as np

from . import __version__
from .backend import BackendError, get_backend, parse_spec
from .cli_types import FiniteRange
from .errors import GpunnError
from .limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_LAYERS, MAX_LR, MAX_SEED, MAX_UNITS, MAX_WEIGHT_DECAY

DEFAULT_HIDDEN = 64


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


class BackendSpec(click.ParamType):
    name = "BACKEND"

    def convert(self, value, param, ctx):
        try:
            parse_spec(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return value


class _Group(click.Group):
    """A click group that turns user-fixable errors into ``Error: <one line>`` and exit 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (GpunnError, BackendError, ValueError, OSError) as exc:
            raise click.ClickException(_one_line(exc)) from None
        except MemoryError as exc:  # what the size checks before each big allocation did not foresee
            raise click.ClickException(
                f"out of memory ({_one_line(exc)}); use a smaller network, --batch-size or data set"
            ) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpunn")
def cli():
    """gpunn: sigmoid networks trained by backprop, on NumPy or NVIDIA GPUs."""


def resolve_sizes(sizes, n_features: int, n_classes: int) -> list[int]:
    """Fill in inferred input/output sizes and check them against the data."""
    sizes = list(sizes) if sizes else [None, DEFAULT_HIDDEN, None]
    if sizes[0] is None:
        sizes[0] = n_features
    if sizes[-1] is None:
        sizes[-1] = max(n_classes, 2)
    if sizes[0] != n_features:
        raise GpunnError(
            f"--layers starts with {sizes[0]} inputs but the data has {n_features} features per sample; "
            f"use --layers {n_features},{','.join(str(s) for s in sizes[1:])}"
        )
    if sizes[-1] < n_classes:
        raise GpunnError(
            f"--layers ends with {sizes[-1]} outputs but the data has labels 0..{n_classes - 1}; "
            f"the output layer needs at least {n_classes} units"
        )
    return sizes


class _Progress:
    """A progress bar on stderr counted in steps, plus one line per epoch."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, step, steps):
        if self.enabled:
            width = 30
            done = int(width * (step + 1) / steps)
            click.echo(f"\r  [{'#' * done}{'.' * (width - done)}] {step + 1}/{steps}", err=True, nl=False)

    def clear(self):
        if self.enabled:
            click.echo("\r" + " " * 60 + "\r", err=True, nl=False)


def _epoch_printer(progress: _Progress, samples: int, epochs: int, quiet: bool):
    from .train import Callback

    class EpochLine(Callback):
        def on_epoch_end(self, epoch, logs=None):
            progress.clear()
            if quiet:
                return
            test = f"  test acc {logs['val_accuracy']:.4f}" if "val_accuracy" in logs else ""
            rate = samples / logs["seconds"] if logs["seconds"] > 0 else float("inf")
            click.echo(
                f"epoch {epoch + 1:>3}/{epochs}  loss {logs['loss']:.5f}  train acc {logs['accuracy']:.4f}"
                f"{test}  {rate:,.0f} samples/s",
                err=True,
            )

    return EpochLine()


@cli.command()
@click.option("--dataset", default="digits", show_default=True,
              help="digits (embedded 8x8 digits), xor, mnist, fashion-mnist, or a .npz/.csv file.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding the four MNIST-format files (else the cache, downloading if needed).")
@click.option("--test-split", type=FiniteRange(0, 1, min_open=True, max_open=True), default=None,
              help="Fraction held out for testing when a user data set has no test arrays [default: 0.2].")
@click.option("--layers", type=LayerSizes(), default=None,
              help=f"Units per layer, e.g. 784,30,10; input/output sizes inferred when left out "
                   f"[default: inputs,{DEFAULT_HIDDEN},classes].")
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=10, show_default=True)
@click.option("--lr", type=FiniteRange(0, MAX_LR, min_open=True), default=3.0, show_default=True,
              help="Learning rate eta.")
@click.option("--momentum", type=FiniteRange(0, 1, max_open=True), default=0.0, show_default=True)
@click.option("--weight-decay", type=FiniteRange(0, MAX_WEIGHT_DECAY), default=0.0, show_default=True,
              help="L2 penalty; --lr times --weight-decay must stay below 2 x (1 + momentum).")
@click.option("--loss", type=click.Choice(["quadratic", "cross_entropy"]), default="quadratic", show_default=True)
@click.option("--init", type=click.Choice(["normal", "scaled"]), default="scaled", show_default=True,
              help="normal: N(0,1) as in the tutorial; scaled: N(0,1/n_in) weights.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--backend", type=BackendSpec(), default=None,
              help="auto, numpy, cupy or cupy:N [default: $GPUNN_BACKEND or auto].")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Save the trained model here (.npz).")
@click.option("--checkpoint-every", type=click.IntRange(1), default=None, metavar="N",
              help="Also save to --output after every N epochs: a checkpoint that --resume continues exactly.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue training this saved model until --epochs in total; its layers, loss, init, dtype "
                   "and seed are kept, and so are its data set and training options unless given.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Draw the loss and accuracy curves into this picture (.png/.svg/.pdf); needs gpunn[plot].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary as the last line of stdout.")
@click.option("--quiet", is_flag=True, help="No per-epoch lines.")
@click.option("--distributed", is_flag=True,
              help="Data-parallel training under mpiexec -n K: each rank trains on 1/K of every minibatch "
                   "(MPI on CPUs, NCCL on GPUs); rank 0 alone prints and saves.")
def train(distributed, backend, **options):
    """Train a network and report its accuracy on the test set."""
    if not distributed:
        return _train(backend=backend, **options)
    from .distributed import abort_on_error, init_distributed

    communicator, backend = init_distributed(backend)
    with abort_on_error(communicator):  # a failing rank ends the whole job instead of hanging it
        _train(backend=backend, communicator=communicator, **options)


def _train(dataset, data_dir, test_split, layers, epochs, batch_size, lr, momentum, weight_decay, loss, init,
           seed, backend, dtype, output, checkpoint_every, resume, plot_path, as_json, quiet, communicator=None):
    """The train command; with a ``communicator`` (--distributed) only rank 0 prints and saves."""
    root = communicator is None or communicator.rank == 0
    quiet = quiet or not root
    from .data import check_representable, load_dataset
    from .limits import decay_problem
    from .memory import check_training_fits
    from .network import Network

    if checkpoint_every and not output:
        raise click.UsageError("--checkpoint-every needs --output, the file the checkpoints go to")
    if plot_path:
        from .plotting import check_output_path, require_matplotlib

        check_output_path(plot_path)
        require_matplotlib()
    net = None
    if resume:
        from .cli_model import recorded_data

        net, saved = _load_for_resume(resume, backend, epochs, loss=loss, init=init, dtype=dtype, seed=seed)
        recorded = recorded_data(resume, saved) if not _given("dataset") else {}
        dataset, data_dir, test_split = _given_or_saved(
            recorded, dataset=dataset, data_dir=data_dir, test_split=test_split)
        batch_size, lr, momentum, weight_decay = _given_or_saved(
            saved["training"], batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay)
        _check_in_range(resume, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay)
    problem = decay_problem(lr, momentum, weight_decay)
    if problem:
        raise click.UsageError(problem)
    _check_outputs(output, plot_path, dataset, resume)
    data = load_dataset(dataset, **_data_options(data_dir, test_split))
    if net is None:
        sizes = resolve_sizes(layers, data.n_features, data.n_classes)
        net = Network(sizes, loss=loss, init=init, backend=backend, dtype=dtype, seed=seed)
    else:
        sizes = _resumed_sizes(resume, net, layers, data)
    for split in ("train", "test"):
        check_representable(getattr(data, f"X_{split}"), net.dtype, f"{data.name} ({split} set)")
    check_training_fits(net.sizes, net.dtype, len(data.X_train), len(data.X_test), batch_size,
                        optimizer_buffers=1 if momentum else 0)
    extra = {"dataset": dataset, "data_dir": data_dir, "test_split": test_split}
    progress = _Progress(enabled=not quiet and not as_json)
    callbacks = [_epoch_printer(progress, len(data.X_train), epochs, quiet)]
    if checkpoint_every and root:
        from .callbacks import ModelCheckpoint

        callbacks.append(ModelCheckpoint(output, every=checkpoint_every, extra=extra))
    if not quiet:
        what = f"resuming {net} from {resume} after epoch {net.epochs_done}" if resume else f"training {net}"
        click.echo(f"{what} on {data.name}: {len(data.X_train)} train / {len(data.X_test)} test samples", err=True)
    started = time.perf_counter()
    history = net.fit(data.X_train, data.y_train, epochs=epochs, batch_size=batch_size, lr=lr,
                      momentum=momentum, weight_decay=weight_decay, validation_data=(data.X_test, data.y_test),
                      callbacks=callbacks, progress=progress, communicator=communicator)
    seconds = time.perf_counter() - started
    train_result = net.evaluate(data.X_train, data.y_train)
    logs = history.history
    train_seconds = sum(logs["seconds"])
    summary = {
        "dataset": data.name,
        "layers": sizes,
        "epochs": net.epochs_done,
        "test_accuracy": logs["val_accuracy"][-1],
        "test_loss": logs["val_loss"][-1],
        "train_accuracy": train_result["accuracy"],
        "train_loss": train_result["loss"],
        "seconds": round(seconds, 4),
        "samples_per_second": round(len(data.X_train) * len(logs["seconds"]) / train_seconds, 1),
        "backend": net.backend.label,
        "dtype": net.dtype.name,
        "seed": net.seed,
    }
    if communicator is not None:
        summary.update(ranks=communicator.size, communicator=communicator.name)
    if not root:
        return
    if output:
        from .io import save

        save(net, output, extra=extra)
        summary["output"] = output
    if plot_path:
        from .plotting import plot_model

        plot_model(net, plot_path, val_label="test")
        summary["plot"] = plot_path
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"test accuracy {summary['test_accuracy']:.4f}  train accuracy {summary['train_accuracy']:.4f}  "
            f"{summary['seconds']:.2f} s  {summary['samples_per_second']:,.0f} samples/s  "
            f"[{summary['backend']}, {summary['dtype']}]"
        )


def _given(name: str) -> bool:
    """Whether the user typed option ``name`` of the running command (rather than leaving its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _load_for_resume(path, backend, epochs, **architecture):
    """Load the model to resume; architecture options typed on the command line must agree with it."""
    from .io import load_with_metadata

    net, metadata = load_with_metadata(path, backend=backend)
    saved = {"loss": net.loss, "init": net.init, "dtype": net.dtype.name, "seed": net.seed}
    for name, value in architecture.items():
        if _given(name) and value != saved[name]:
            raise GpunnError(
                f"--{name} {value} conflicts with {path}, which was made with --{name} {saved[name]}; "
                f"leave --{name} out when resuming"
            )
    history = net.history
    if history is not None and history.epoch and "val_loss" not in history.history:
        raise GpunnError(
            f"{path} was trained without a test set (its history has no val_loss), but gpunn train scores one every "
            f"epoch, so the resumed history could not be saved; continue it from Python with Network.fit"
        )
    if net.epochs_done >= epochs:
        raise GpunnError(
            f"{path} has already trained {net.epochs_done} epochs and --epochs is the total to reach; "
            f"pass --epochs {net.epochs_done + 1} or more"
        )
    return net, metadata


def _check_outputs(output, plot_path, dataset, resume) -> None:
    """Before any work: every output can be written, and none replaces an input (--resume may be --output)."""
    from .data import USER_SUFFIXES
    from .files import check_distinct, check_output

    outputs = {"--output": output, "--plot": plot_path}
    for option, path in outputs.items():
        if path is not None:
            check_output(path, option)
    data_file = dataset if isinstance(dataset, str) and dataset.lower().endswith(USER_SUFFIXES) else None
    check_distinct(outputs, {"--dataset": data_file})
    check_distinct({"--plot": plot_path}, {"--resume": resume})


def _check_in_range(path, **values) -> None:
    """The training options a resumed run takes from its model file must pass the options' own range checks."""
    for name, value in values.items():
        if _given(name):
            continue
        param = next(p for p in train.params if p.name == name)
        try:
            param.type.convert(value, param, None)
        except click.BadParameter as exc:
            option = "--" + name.replace("_", "-")
            raise GpunnError(f"{path} was trained with {option} {value}: {exc.message} Give {option} to choose "
                             f"the value for the rest of the run") from None


def _given_or_saved(saved: dict, **options) -> list:
    """Each option's value: as typed on the command line, else as saved in the model, else the default."""
    return [value if _given(name) or name not in saved else saved[name] for name, value in options.items()]


def _resumed_sizes(path, net, layers, data) -> list[int]:
    """The resumed model's layer sizes, checked against the data and any --layers typed."""
    sizes = list(net.sizes)
    if data.n_features != sizes[0]:
        raise GpunnError(
            f"{path} takes {sizes[0]} inputs but {data.name} has {data.n_features} features per sample; "
            f"resume on the data set it was trained on"
        )
    typed = list(layers or sizes)
    typed[0] = sizes[0] if typed[0] is None else typed[0]
    typed[-1] = sizes[-1] if typed[-1] is None else typed[-1]
    if typed != sizes:
        raise GpunnError(
            f"--layers {','.join(map(str, typed))} conflicts with {path}, whose layers are "
            f"{','.join(map(str, sizes))}; leave --layers out when resuming"
        )
    return sizes


def _data_options(data_dir, test_split) -> dict:
    options = {}
    if data_dir is not None:
        options["data_dir"] = data_dir
    if test_split is not None:
        options["test_split"] = test_split
    return options


@cli.command()
def info():
    """Show the backend that auto picks and why, the device, and library versions."""
    backend = get_backend("auto")
    click.echo(f"gpunn {__version__}")
    click.echo(f"numpy {np.__version__}")
    click.echo(f"auto backend: {backend.label} ({backend.reason})")
    try:
        import cupy
    except Exception as exc:  # reporting only: any import failure means "not usable"
        click.echo(f"cupy: not available ({exc.__class__.__name__}: {exc})")
        return
    click.echo(f"cupy {cupy.__version__}")
    try:
        click.echo(f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
        click.echo(f"CUDA driver {cupy.cuda.runtime.driverGetVersion()}")
    except Exception as exc:
        click.echo(f"CUDA: not usable ({exc})")
    if backend.is_gpu:
        props = cupy.cuda.runtime.getDeviceProperties(backend.device_id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        click.echo(f"device {backend.device_id}: {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB")


def _add_commands() -> None:
    """The commands that live in their own modules: data, evaluate/predict/plot, bench."""
    from .bench import bench
    from .cli_data import data_group
    from .cli_model import model_commands

    for command in (data_group, *model_commands, bench):
        cli.add_command(command)


_add_commands()


def main(argv=None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="gpunn")
