"""The ``gpunn`` command line: ``train``, ``info`` and the commands other modules add.

Errors the user can fix (bad options, bad data, no GPU) print one line,
``Error: ...``, and exit with status 2 (usage) or 1 (runtime); never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import click
import numpy as np

from gpunn._version import __version__
from gpunn.compute.backend import BackendError, get_backend, parse_spec
from gpunn.cli.options import FiniteRange, LayerSizes
from gpunn.errors import GpunnError, command_line_interface
from gpunn.nn.labels import classes_to_json
from gpunn.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_LR, MAX_SEED, MAX_WEIGHT_DECAY
from gpunn.nn.parameters import INITS
from gpunn.compute.ops import ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS
from gpunn.data.userdata import TASKS
from gpunn.training.optim import LR_SCALINGS, OPTIMIZERS
from gpunn.nn.preprocessing import SCALINGS, Scaler

DEFAULT_HIDDEN = 64


class BackendSpec(click.ParamType):
    name = "BACKEND"

    def convert(self, value, param, ctx):
        try:
            parse_spec(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return value


class _Group(click.Group):
    """A click group that turns user-fixable errors into ``Error: <one line>`` and exit 1.

    Errors raised while a command runs name command-line options, not Python arguments
    (:func:`gpunn.errors.option_name`).  A reader that closes the pipe early
    (``gpunn evaluate m.npz | head -1``) ends the command quietly with status 0, as
    other Unix tools do.
    """

    def invoke(self, ctx):
        try:
            with command_line_interface():
                return super().invoke(ctx)
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(0)
        except (GpunnError, BackendError, ValueError, OSError) as exc:
            raise click.ClickException(_one_line(exc)) from None
        except MemoryError as exc:  # what the size checks before each big allocation did not foresee
            raise click.ClickException(
                f"out of memory ({_one_line(exc)}); use a smaller network, --batch-size or data set"
            ) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush to the closed pipe is not an error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpunn")
def cli():
    """gpunn: sigmoid networks trained by backprop, on NumPy or NVIDIA GPUs."""


def resolve_sizes(sizes, n_features: int, n_classes: int, regression: bool = False) -> list[int]:
    """Fill in inferred input/output sizes and check them against the data.

    The output layer has one unit per class (a regression network: per target column,
    ``n_classes``).  A mismatch is an error whose suggestion is always a valid network:
    the typed sizes that cannot be the input or the output layer are kept as hidden layers.
    """
    sizes = list(sizes) if sizes else [None, DEFAULT_HIDDEN, None]
    n_outputs = n_classes if regression else max(n_classes, 2)  # one class only still needs two answers
    if sizes[0] is None:
        sizes[0] = n_features
    if sizes[-1] is None:
        sizes[-1] = n_outputs
    if sizes[0] == n_features and sizes[-1] == n_outputs:
        return sizes
    hidden = sizes[1:-1]
    if sizes[0] != n_features:
        hidden = [sizes[0], *hidden]
    if sizes[-1] != n_outputs:
        hidden = [*hidden, sizes[-1]]
    fixed = ",".join(str(s) for s in [n_features, *hidden, n_outputs])
    raise click.UsageError(
        f"--layers {','.join(map(str, sizes))} does not fit the data, which has {n_features} features per sample "
        f"and {n_classes} {'targets' if regression else 'classes'}: the first size must be {n_features} and the "
        f"last {n_outputs}; "
        f"e.g. --layers {fixed}"
    )


def _epoch_printer(progress, samples: int, epochs: int, quiet: bool):
    """The epoch lines (none with --quiet) and the run's warnings (always), on stderr, above the progress bar."""
    from gpunn.training.callbacks import EpochLogger

    return EpochLogger(epochs, samples, val_label="test", show_warnings=True, lines=not quiet,
                       before_line=progress.clear)


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
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), default=30, show_default=True,
              help="Epochs to train (with --resume: the total to reach).")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=10, show_default=True)
@click.option("--activation", type=click.Choice(ACTIVATIONS), default="sigmoid", show_default=True,
              help="The hidden layers' activation.")
@click.option("--task", type=click.Choice(TASKS), default="classification", show_default=True,
              help="regression: the first column of a .csv (or y of a .npz) holds float targets, learned by "
                   "identity outputs and the squared error (targets standardised inside the model).")
@click.option("--output-activation", type=click.Choice(OUTPUT_ACTIVATIONS), default=None,
              help="sigmoid: every output squashed on its own (the tutorial's); softmax: class probabilities; "
                   "identity: values (--task regression) [default: sigmoid; identity for --task regression].")
@click.option("--loss", type=click.Choice(LOSSES), default=None,
              help="quadratic (the tutorial's 1/2 (t - y)^2) or cross_entropy [default: quadratic for sigmoid "
                   "outputs, cross_entropy for softmax].")
@click.option("--scale", type=click.Choice(SCALINGS), default="auto", show_default=True,
              help="Feature scaling fitted on the training set and kept in the model: auto (8-bit pixels / 255, "
                   "features within [0, 1] as they are, others standardised), minmax, standard or none.")
@click.option("--init", type=click.Choice(INITS), default=None,
              help="normal: N(0,1) as in the tutorial; scaled: N(0,1/n_in); xavier: N(0,2/(n_in+n_out)); "
                   "he: N(0,2/n_in) [default: scaled for sigmoid, xavier for tanh, he for relu].")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="sgd", show_default=True)
@click.option("--lr", type=FiniteRange(0, MAX_LR, min_open=True), default=None,
              help="Learning rate eta [default: 3.0 for sgd, with per-layer step sizes (--lr-scaling), 0.1 for "
                   "--task regression; 0.001 for adam and adamw].")
@click.option("--lr-scaling", type=click.Choice(["auto", *LR_SCALINGS]), default="auto", show_default=True,
              help="SGD only. fan_in: each layer's step is --lr times min(1, 64/fan_in), so wide layers do "
                   "not saturate; none: --lr everywhere (plain SGD); auto: fan_in when --lr is left out.")
@click.option("--momentum", type=FiniteRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="SGD momentum.")
@click.option("--nesterov", is_flag=True, help="SGD: Nesterov momentum (needs --momentum).")
@click.option("--beta1", type=FiniteRange(0, 1, max_open=True), default=0.9, show_default=True,
              help="Adam/AdamW: decay rate of the gradient's running mean.")
@click.option("--beta2", type=FiniteRange(0, 1, max_open=True), default=0.999, show_default=True,
              help="Adam/AdamW: decay rate of the squared gradient's running mean.")
@click.option("--eps", type=FiniteRange(0, 1, min_open=True), default=1e-8, show_default=True,
              help="Adam/AdamW: added to the denominator.")
@click.option("--weight-decay", type=FiniteRange(0, MAX_WEIGHT_DECAY), default=None,
              help="L2 for sgd and adam, decoupled for adamw [default: 0; 0.01 for adamw]; with sgd and adamw, "
                   "--lr times --weight-decay must stay below 2 x (1 + momentum).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--backend", type=BackendSpec(), default=None,
              help="auto, numpy, cupy or cupy:N [default: $GPUNN_BACKEND or auto].")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Save the trained model here (.npz).")
@click.option("--checkpoint-every", type=click.IntRange(1), default=None, metavar="N",
              help="Also save to --output after every N epochs: a checkpoint that --resume continues exactly.")
@click.option("--patience", type=click.IntRange(1), default=None, metavar="N",
              help="Stop early when the test-set loss (the command's validation data) has not improved for N "
                   "epochs, and keep the best epoch's weights.")
@click.option("--min-delta", type=click.FloatRange(0), default=0.0, show_default=True,
              help="With --patience: the smallest fall of the loss that counts as an improvement.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue training this saved model until --epochs in total (default: the total its run was "
                   "started with) and save it back there unless --output is given; its layers, loss, init, "
                   "dtype, seed and scaling are kept, and so are its data set, training options and checkpoint "
                   "interval unless given.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Draw the loss and accuracy curves into this picture (.png/.svg/.pdf); needs gpunn[plot].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary as the last line of stdout.")
@click.option("--quiet", is_flag=True, help="No per-epoch lines and no progress bar.")
@click.option("--record-trajectory", is_flag=True,
              help="Keep the weights at the start and after each epoch (at most 101 snapshots and 64 MiB; "
                   "thinned evenly beyond that) in the --output model, for gpunn plot --landscape.")
@click.option("--distributed", is_flag=True,
              help="Data-parallel training under mpiexec -n K: each rank trains on 1/K of every minibatch "
                   "(MPI on CPUs, NCCL on GPUs); rank 0 alone prints and saves.")
def train(distributed, backend, **options):
    """Train a network and report its accuracy on the test set."""
    if not distributed:
        return _train(backend=backend, **options)
    from gpunn.training.distributed import abort_on_error, init_distributed

    communicator, backend = init_distributed(backend)
    with abort_on_error(communicator):  # a failing rank ends the whole job instead of hanging it
        _train(backend=backend, communicator=communicator, **options)


def _train(dataset, data_dir, test_split, layers, epochs, batch_size, task, activation, output_activation, loss, scale,
           init, optimizer, lr, lr_scaling, momentum, nesterov, beta1, beta2, eps, weight_decay, seed, backend, dtype,
           output, checkpoint_every, patience, min_delta, resume, plot_path, as_json, quiet, record_trajectory,
           communicator=None):
    """The train command; with a ``communicator`` (--distributed) only rank 0 prints and saves."""
    root = communicator is None or communicator.rank == 0
    quiet = quiet or not root
    from gpunn.data.datasets import check_representable, load_dataset
    from gpunn.memory import check_training_fits
    from gpunn.network import Network
    from gpunn.training.loop import TrainingWarning

    if checkpoint_every and not (output or resume):
        raise click.UsageError("--checkpoint-every needs --output, the file the checkpoints go to")
    if record_trajectory and not output:
        raise click.UsageError("--record-trajectory keeps the path in the model file; give --output")
    output_activation = _output_for_task(task, output_activation)
    _check_combinations(output_activation, loss, optimizer, momentum, nesterov, lr_scaling)
    if plot_path:
        from gpunn.explain.plotting import check_output_path, require_matplotlib

        check_output_path(plot_path)
        require_matplotlib()
    training = {"optimizer": optimizer, "lr": lr, "momentum": momentum, "nesterov": nesterov,
                "betas": [beta1, beta2], "eps": eps, "weight_decay": weight_decay,
                "lr_scaling": None if lr_scaling == "auto" else lr_scaling}
    net = None
    if resume:
        net, saved = _load_for_resume(resume, backend, activation=activation, output_activation=output_activation,
                                      loss=loss, init=init, dtype=dtype, seed=seed, scale=scale)
        task = net.task
        from gpunn.cli.model import recorded_data, recorded_extra

        recorded = recorded_extra(resume, saved)
        _check_typed_layers(resume, net, layers)
        epochs = _resumed_epochs(resume, net, recorded, saved, epochs)
        if not _given("dataset"):
            dataset, data_dir, test_split = recorded_data(resume, recorded, data_dir, test_split)
        training, batch_size = _resumed_training(saved.get("training", {}), training, batch_size)
        output = output or resume
        if checkpoint_every is None and isinstance(recorded.get("checkpoint_every"), int):
            checkpoint_every = recorded["checkpoint_every"]
        _check_in_range(resume, batch_size=batch_size, **{key: training[key] for key in ("lr", "momentum", "eps")})
        if training["weight_decay"] is not None:
            _check_in_range(resume, weight_decay=training["weight_decay"])
    problem = _decay_problem(training)
    if problem:
        raise click.UsageError(problem)
    _check_outputs(output, plot_path, dataset, resume)
    data = load_dataset(dataset, task=task, **_data_options(data_dir, test_split))
    regression = task == "regression"
    if net is None:
        sizes = resolve_sizes(layers, data.n_features, data.n_outputs, regression)
        net = Network(sizes, activation=activation, output_activation=output_activation, loss=loss, init=init,
                      backend=backend, dtype=dtype, seed=seed, scale=scale,
                      classes=data.classes if not regression and len(data.classes) == sizes[-1] else None)
    else:
        sizes = _resumed_sizes(resume, net, layers, data)
    for split in ("train", "test"):
        check_representable(getattr(data, f"X_{split}"), net.dtype, f"{data.name} ({split} set)")
    if net.scaler is None:
        net.scaler = Scaler.fit(data.X_train, scale)  # fitted here to say what it does before training
        if not quiet:
            click.echo(f"scaling ({scale}): {net.scaler.describe(data.n_features)}", err=True)
    buffers = 2 if training["optimizer"] in ("adam", "adamw") else (1 if training["momentum"] else 0)
    check_training_fits(net.sizes, net.dtype, len(data.X_train), len(data.X_test), batch_size,
                        optimizer_buffers=buffers)
    extra = {"dataset": _absolute_if_file(dataset), "data_dir": data_dir and str(Path(data_dir).resolve()),
             "test_split": test_split, "epochs": epochs, "checkpoint_every": checkpoint_every}
    from gpunn.cli.progress import RunProgress

    progress = RunProgress(enabled=not quiet and not as_json, epochs=epochs - net.epochs_done)
    callbacks = [_epoch_printer(progress, len(data.X_train), epochs, quiet), progress]
    if checkpoint_every and root:
        from gpunn.training.callbacks import ModelCheckpoint

        callbacks.append(ModelCheckpoint(output, every=checkpoint_every, extra=extra))
    if patience:
        from gpunn.training.callbacks import EarlyStopping

        callbacks.append(EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta))
    if record_trajectory or net.trajectory is not None:  # last, so that the path ends where training does
        from gpunn.training.trajectory import TrajectoryRecorder

        callbacks.append(TrajectoryRecorder())  # a resumed model's path goes on
    if not quiet:
        what = f"resuming {net} from {resume} after epoch {net.epochs_done}" if resume else f"training {net}"
        click.echo(f"{what} on {data.name}: {len(data.X_train)} train / {len(data.X_test)} test samples", err=True)
    started = time.perf_counter()
    with warnings.catch_warnings(), progress:  # the epoch printer shows them as "Warning: ..." lines
        warnings.simplefilter("ignore", TrainingWarning)
        history = net.fit(data.X_train, data.y_train, epochs=epochs - net.epochs_done, batch_size=batch_size,
                          validation_data=(data.X_test, data.y_test), callbacks=callbacks, progress=progress,
                          communicator=communicator, **training)
    seconds = time.perf_counter() - started
    with np.errstate(all="ignore"):  # a diverging run was diagnosed in training; its summary says the rest
        train_result = net.evaluate(data.X_train, data.y_train)
    logs = history.history
    train_seconds = sum(logs["seconds"])
    summary = {
        "dataset": data.name,
        "layers": sizes,
        "activation": net.activation,
        "output_activation": net.output_activation,
        "loss": net.loss,
        "optimizer": history.params["optimizer"],
        "lr": history.params["lr"],
        "scaling": net.scaler.method,
        "task": net.task,
        "classes": None if regression else classes_to_json(net.classes),
        "epochs": net.epochs_done,
        "test_loss": logs["val_loss"][-1],
        "train_loss": train_result["loss"],
        "seconds": round(seconds, 4),
        "samples_per_second": round(len(data.X_train) * len(logs["seconds"]) / train_seconds, 1),
        "backend": net.backend.label,
        "dtype": net.dtype.name,
        "seed": net.seed,
        "dense": history.params.get("dense"),
        "step": history.params.get("step"),
        "warnings": list(history.warnings),
    }
    if regression:  # the test figures in the targets' units, as evaluate --json gives them
        summary.update(test_r2=logs["val_r2"][-1], test_mse=logs["val_mse"][-1], test_mae=logs["val_mae"][-1],
                       train_r2=train_result["r2"])
    else:
        summary.update(test_accuracy=logs["val_accuracy"][-1], train_accuracy=train_result["accuracy"])
    if communicator is not None:
        summary.update(ranks=communicator.size, communicator=communicator.name)
    if not root:
        return
    if output:
        from gpunn.saving.model_file import save

        save(net, output, extra=extra)
        summary["output"] = output
    if plot_path:
        from gpunn.explain.plotting import plot_model

        predictions = (data.y_test, net.predict(data.X_test)) if regression else None
        plot_model(net, plot_path, val_label="test", predictions=predictions)
        summary["plot"] = plot_path
    if as_json:
        click.echo(json.dumps(summary))
    elif regression:
        click.echo(
            f"test R2 {summary['test_r2']:.4f}  test MAE {summary['test_mae']:.5g}  train R2 {summary['train_r2']:.4f} "
            f"(after training)  {summary['seconds']:.2f} s  [{summary['backend']}, {summary['dtype']}]"
        )
    else:
        click.echo(
            f"test accuracy {summary['test_accuracy']:.4f}  train accuracy {summary['train_accuracy']:.4f} "
            f"(after training)  {summary['seconds']:.2f} s  {summary['samples_per_second']:,.0f} samples/s  "
            f"[{summary['backend']}, {summary['dtype']}"
            + (f", {summary['dense']} products, {summary['step']}]" if summary["dense"] else "]")
        )


def _absolute_if_file(name):
    """A data set name as a model file records it: paths made absolute, so the model works from any folder.

    The names of the built-in data sets stay names, even beside a folder of that name
    (``--dataset mnist --data-dir mnist``).
    """
    from gpunn.data.datasets import BUILTIN, MNIST_FAMILY

    if name is None or name in (*BUILTIN, *MNIST_FAMILY) or not (
            os.sep in str(name) or str(name).lower().endswith((".npz", ".csv")) or Path(name).exists()):
        return name
    return str(Path(name).resolve())


def _resumed_epochs(path, net, recorded: dict, metadata: dict, epochs: int) -> int:
    """The total number of epochs a resumed run trains to: --epochs if typed, else its run's own target."""
    if not _given("epochs"):
        target = recorded.get("epochs")
        if not isinstance(target, int) and metadata.get("format_version") == 1:  # format 1 kept it here
            target = ((metadata.get("history") or {}).get("params") or {}).get("epochs")
        epochs = target if isinstance(target, int) and not isinstance(target, bool) else epochs
    if net.epochs_done >= epochs:
        raise GpunnError(
            f"{path} has already trained {net.epochs_done} epochs and --epochs is the total to reach; "
            f"pass --epochs {net.epochs_done + 1} or more"
        )
    return epochs


def _output_for_task(task: str, output_activation):
    """The output layer a task trains (--output-activation, checked against --task)."""
    if task == "regression":
        if output_activation not in (None, "identity"):
            raise click.UsageError(f"--task regression trains identity outputs, not --output-activation "
                                   f"{output_activation}; leave --output-activation out")
        return "identity"
    if output_activation == "identity":
        raise click.UsageError("--output-activation identity is a regression network's: add --task regression")
    return output_activation or "sigmoid"


def _check_combinations(output_activation, loss, optimizer, momentum, nesterov, lr_scaling) -> None:
    """Usage errors for options that make no sense together (before any data is read)."""
    from gpunn.compute.ops import default_loss, objective

    try:
        objective(output_activation, loss or default_loss(output_activation))
    except ValueError as exc:
        raise click.UsageError(str(exc).replace("loss ", "--loss ", 1)) from None
    if optimizer != "sgd" and (momentum or nesterov or lr_scaling not in ("auto", "none")):
        raise click.UsageError(f"--momentum, --nesterov and --lr-scaling apply to --optimizer sgd, not {optimizer}")
    if nesterov and not momentum:
        raise click.UsageError("--nesterov needs a --momentum above 0, e.g. --momentum 0.9")


def _resumed_training(saved: dict, typed: dict, batch_size: int) -> tuple[dict, int]:
    """The optimizer options and batch size of a resumed run: as typed, else as saved, else the defaults.

    (A file of format 1 saved no optimizer and no lr scaling, but its learning rate: that
    makes it plain SGD, as it was trained.)
    """
    saved = saved if isinstance(saved, dict) else {}
    cli_names = {"betas": ("beta1", "beta2")}
    options = {key: value if any(_given(name) for name in cli_names.get(key, (key,))) or key not in saved
               else saved[key] for key, value in typed.items()}
    (batch_size,) = _given_or_saved(saved, batch_size=batch_size)
    return options, batch_size


def _given(name: str) -> bool:
    """Whether the user typed option ``name`` of the running command (rather than leaving its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _load_for_resume(path, backend, **architecture):
    """Load the model to resume; architecture options typed on the command line must agree with it."""
    from gpunn.network import load_with_metadata

    net, metadata = load_with_metadata(path, backend=backend)
    saved = {"activation": net.activation, "output_activation": net.output_activation, "loss": net.loss,
             "init": net.init, "dtype": net.dtype.name, "seed": net.seed, "scale": net.scale}
    for name, value in architecture.items():
        if _given(name) and value != saved[name]:
            option = "--" + name.replace("_", "-")
            raise GpunnError(
                f"{option} {value} conflicts with {path}, which was made with {option} {saved[name]}; "
                f"leave {option} out when resuming"
            )
    history = net.history
    if history is not None and history.epoch and "val_loss" not in history.history:
        raise GpunnError(
            f"{path} was trained without a test set (its history has no val_loss), but gpunn train scores one every "
            f"epoch, so the resumed history could not be saved; continue it from Python with Network.fit"
        )
    return net, metadata


def _check_outputs(output, plot_path, dataset, resume) -> None:
    """Before any work: every output can be written, and none replaces an input (--resume may be --output)."""
    from gpunn.data.datasets import USER_SUFFIXES
    from gpunn.files import check_distinct, check_output

    outputs = {"--output": output, "--plot": plot_path}
    for option, path in outputs.items():
        if path is not None:
            check_output(path, option)
    data_file = dataset if isinstance(dataset, str) and dataset.lower().endswith(USER_SUFFIXES) else None
    check_distinct(outputs, {"--dataset": data_file})
    check_distinct({"--plot": plot_path}, {"--resume": resume})


def _decay_problem(training: dict) -> str | None:
    """Why the weight decay must make this run diverge (SGD's and AdamW's shrink of every weight), or None."""
    from gpunn.limits import decay_problem
    from gpunn.training.optim import DEFAULT_LR, DEFAULT_WEIGHT_DECAY

    optimizer = training["optimizer"]
    if optimizer == "adam":  # L2 inside Adam's normalised step: no such bound
        return None
    lr = DEFAULT_LR[optimizer] if training["lr"] is None else training["lr"]
    decay = DEFAULT_WEIGHT_DECAY[optimizer] if training["weight_decay"] is None else training["weight_decay"]
    return decay_problem(lr, training["momentum"] if optimizer == "sgd" else 0.0, decay)


def _check_in_range(path, **values) -> None:
    """The training options a resumed run takes from its model file must pass the options' own range checks."""
    for name, value in values.items():
        if _given(name) or value is None:
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
    """The resumed model's layer sizes, checked against the data."""
    sizes = list(net.sizes)
    if data.n_features != sizes[0]:
        raise GpunnError(
            f"{path} takes {sizes[0]} inputs but {data.name} has {data.n_features} features per sample; "
            f"resume on the data set it was trained on"
        )
    return sizes


def _check_typed_layers(path, net, layers) -> None:
    """Any --layers typed when resuming must be the model's own."""
    sizes = list(net.sizes)
    typed = list(layers or sizes)
    typed[0] = sizes[0] if typed[0] is None else typed[0]
    typed[-1] = sizes[-1] if typed[-1] is None else typed[-1]
    if typed != sizes:
        raise GpunnError(
            f"--layers {','.join(map(str, typed))} conflicts with {path}, whose layers are "
            f"{','.join(map(str, sizes))}; leave --layers out when resuming"
        )


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
    _echo_dense_paths()
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


def _echo_dense_paths() -> None:
    """The dense-path setting of the GPU backend and the autotuner's cached picks (gpunn.training.autotune)."""
    from gpunn.training.autotune import TuningCache
    from gpunn.compute.dense import ENV_VAR, requested

    try:
        asked = requested()
    except ValueError as exc:
        click.echo(f"dense products: {exc}")
    else:
        how = ("measured per network shape on a GPU's first fit, then cached" if asked == "auto"
               else f"forced by {ENV_VAR}")
        click.echo(f"dense products: {asked} ({how}); fused steps run as one CUDA graph, cublas steps "
                   "kernel by kernel")
    cache = TuningCache()
    devices = cache.load()
    if not devices:
        click.echo(f"cached picks ({cache.path}): none yet")
        return
    click.echo(f"cached picks ({cache.path}):")
    for device, shapes in sorted(devices.items()):
        click.echo(f"  {device}")
        for shape, record in sorted(shapes.items()):
            times = ", ".join(f"{path} {us:g} us" for path, us in sorted(record.get("step_us", {}).items()))
            click.echo(f"    {shape}: {record.get('pick')} ({times} per step)")


def _add_commands() -> None:
    """The commands that live in their own modules: data, evaluate/predict/plot, explain, export, bench, playground."""
    from gpunn.bench.race import bench
    from gpunn.cli.data import data_group
    from gpunn.cli.explain import explain
    from gpunn.cli.export import export
    from gpunn.cli.model import model_commands
    from gpunn.cli.playground import playground

    for command in (data_group, *model_commands, explain, export, bench, playground):
        cli.add_command(command)


_add_commands()


def main(argv=None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="gpunn")
