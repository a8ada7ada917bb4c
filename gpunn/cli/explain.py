"""``gpunn explain``: one training step of a small network, or of a trained model on one real sample,
written out with its numbers (see :mod:`gpunn.explain.step` for what is computed, :mod:`gpunn.explain.text`
for how it is shown)."""

from __future__ import annotations

import json

import click
import numpy as np

from gpunn.cli.options import LayerSizes
from gpunn.errors import GpunnError
from gpunn.explain.step import DEFAULT_LR, default_input, default_target, explain_step, network_input, one_hot_target
from gpunn.nn.parameters import INITS
from gpunn.compute.ops import ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS

DEFAULT_LAYERS = "2,2,2"
#: Options that describe a new network, which a saved model brings with it instead.
NETWORK_OPTIONS = ("layers", "activation", "output_activation", "loss", "init", "seed", "input_values", "target")


class NumberList(click.ParamType):
    """``0.05,0.10``: finite numbers separated by commas."""

    name = "NUMBERS"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return [float(v) for v in value]
        try:
            numbers = [float(part) for part in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r}: give numbers separated by commas, e.g. 0.05,0.10", param, ctx)
        if not all(np.isfinite(numbers)):
            self.fail(f"{value!r}: the numbers must be finite", param, ctx)
        return numbers


class Target(NumberList):
    """A class index (``1``) or a target vector (``0.01,0.99``)."""

    name = "CLASS|NUMBERS"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        return super().convert(value, param, ctx)


@click.command()
@click.option("--layers", type=LayerSizes(), default=DEFAULT_LAYERS, show_default=True,
              help="Units per layer of the network to explain.")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default="sigmoid", show_default=True,
              help="The hidden layers' activation.")
@click.option("--output-activation", type=click.Choice(OUTPUT_ACTIVATIONS), default="sigmoid", show_default=True)
@click.option("--loss", type=click.Choice(LOSSES), default=None,
              help="quadratic or cross_entropy [default: quadratic for sigmoid outputs, cross_entropy for softmax].")
@click.option("--init", type=click.Choice(INITS), default=None,
              help="How the weights are drawn [default: scaled for sigmoid, xavier for tanh, he for relu].")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Seeds the weights.")
@click.option("--lr", type=click.FloatRange(0, 1e6, min_open=True), default=DEFAULT_LR, show_default=True,
              help="The learning rate η of the step.")
@click.option("--input", "input_values", type=NumberList(), default=None,
              help="The input x, e.g. 0.05,0.10 [default: 0.05, 0.10, 0.15, ... one per input].")
@click.option("--target", type=Target(), default=None,
              help="A class index (e.g. 1: output 1 should fire) or the target vector t, e.g. 0.01,0.99 "
                   "[default: 0.01,...,0.99 for the quadratic error, the last class for cross-entropy]. "
                   "On a network with one output a single number is its target value.")
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="Explain this trained model (.npz) on one sample of its test set instead.")
@click.option("--dataset", default=None, help="With --model: the data set [default: the model's own].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="With --model: the folder of the MNIST-format files [default: the model's own].")
@click.option("--sample", type=click.IntRange(0), default=0, show_default=True,
              help="With --model: which test sample, counted from 0.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the step as one JSON object (every number in full) instead of the text.")
def explain(model, dataset, data_dir, sample, lr, as_json, **network):
    """One training step written out with its numbers: forward, error, backprop, update, and a check.

    Every neuron's v = Σ x·w + b and y = f(v), the answer, the error, each δ by the chain rule,
    ∂E/∂w and ∂E/∂b, the update W - η·∂E/∂W and the error after it, then every gradient against
    finite differences.  gpunn computes it all in float64 on NumPy with its own forward pass,
    backprop and SGD; the text shows 4 digits, --json every number.
    """
    if model:
        given = [name for name in NETWORK_OPTIONS if _given(name)]
        if given:
            names = ", ".join("--" + ("input" if n == "input_values" else n.replace("_", "-")) for n in given)
            verb = "describes" if len(given) == 1 else "describe"
            raise click.UsageError(f"{names} {verb} a new network; a --model brings its own and explains "
                                   f"one --sample of its data set")
        net, x, t, label, source = _model_sample(model, dataset, data_dir, sample)
    else:
        if dataset or data_dir or _given("sample"):
            raise click.UsageError("--dataset, --data-dir and --sample go with --model")
        net, x, t = _new_network(**network)
        label = source = None
    step = explain_step(net, x, t, lr=lr)
    if as_json:
        record = step.to_json()
        if label is not None:
            record.update(model=model, sample=sample, label=label, source=source)
        click.echo(json.dumps(record))
        return
    from gpunn.explain.text import render

    for line in render(step, source=source, label=label):
        click.echo(line)


def _given(name: str) -> bool:
    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _new_network(layers, activation, output_activation, loss, init, seed, input_values, target):
    """A fresh network from the options, and its sample (x, t)."""
    from gpunn.network import Network

    sizes = list(layers)
    if sizes[0] is None:
        sizes[0] = len(input_values) if input_values else 2
    if sizes[-1] is None:
        sizes[-1] = len(target) if isinstance(target, list) else 2
    net = Network(sizes, activation=activation, output_activation=output_activation, loss=loss, init=init,
                  backend="numpy", dtype="float64", seed=seed)
    x = default_input(sizes[0]) if input_values is None else np.array(input_values)
    if target is None:
        t = default_target(net)
    elif isinstance(target, int) and sizes[-1] > 1:
        t = one_hot_target(target, sizes[-1])
    else:
        t = np.atleast_1d(np.array(target, dtype=np.float64))
    return net, x, t


def _model_sample(model, dataset, data_dir, sample):
    """The saved network, test sample ``sample`` of its data set as the network sees it (scaled as in
    training) with its one-hot target, the index of its label, and a description of where it came from."""
    from gpunn.cli.model import _check_width, _model_dataset
    from gpunn.network import load_with_metadata

    net, metadata = load_with_metadata(model, backend="numpy")
    data = _model_dataset(model, metadata, dataset, data_dir, None, net.task)
    _check_width(net, data.n_features, f"data set {data.name}")
    if sample >= len(data.y_test):
        raise GpunnError(f"--sample {sample} is beyond the {len(data.y_test)} test samples of {data.name}; "
                         f"give 0 to {len(data.y_test) - 1}")
    scaled = net.scaler is not None and net.scaler.method != "none"
    source = f"sample {sample} of the {data.name} test set" + (f", scaled ({net.scaler.method})" if scaled else "")
    if net.task == "regression":  # the target as the network learns it: standardised (see gpunn.nn.targets)
        target = net.target_scaling.apply(np.asarray(data.y_test[sample], np.float64).reshape(1, -1))[0]
        return net, network_input(net, data.X_test[sample]), target, None, source + ", target standardised"
    label = int(net.label_indices(data.y_test[sample:sample + 1], 1)[0])
    return net, network_input(net, data.X_test[sample]), one_hot_target(label, net.sizes[-1]), label, source
