"""Export a trained network as an ONNX model of plain standard operators.

The graph computes exactly what :meth:`gpunn.Network.predict_proba` and
:meth:`~gpunn.Network.predict` compute, with one input and two outputs:

``input``
    (batch, inputs) in the network's dtype (float32 or float64); the batch axis is dynamic.
``probabilities``
    (batch, classes): the output layer's activations, as ``predict_proba`` gives them
    (softmax rows sum to 1, sigmoid outputs do not).
``label``
    (batch,): the class of the most active output, as ``predict`` gives it: ``ArgMax``,
    then ``Gather`` from the network's classes (int64 or string), or the int64 index
    itself for a network without classes.

A regression network (``output_activation="identity"``) has one output instead:

``prediction``
    what ``predict`` gives: (batch,) for a network fitted on 1-D targets, else
    (batch, outputs): the last ``Gemm``, then ``Mul`` by the targets' standard
    deviations and ``Add`` of their means (the standardisation undone, see
    :mod:`gpunn.nn.targets`), in the network's dtype (``predict`` answers in float64);
    no ``ArgMax``.

Nodes, in order: the feature scaling fitted in training (:mod:`gpunn.nn.preprocessing`) as
``Sub`` and ``Mul`` (absent when there is none); per layer ``Gemm`` (``x W + b``, with
``W`` inputs x outputs as gpunn stores it) and the layer's activation (``Sigmoid``,
``Tanh`` or ``Relu``; a softmax output layer ``Softmax(axis=1)``); ``ArgMax`` and
``Gather``.  Opset :data:`OPSET` (ONNX 1.12 and newer), IR version :data:`IR_VERSION`.
Every one of these operators has float32 and float64 kernels in ONNX Runtime's CPU
provider, so float64 networks export as float64.

ONNX Runtime computes the sigmoid, tanh and exp with its own approximations and sums
the products in its own order, so its float32 probabilities agree with gpunn's to
about 1e-6, not bit for bit (the tests hold them to rtol 1e-5, atol 1e-6).

Needs ``pip install "gpunn[onnx]"`` (onnx; onnxruntime to run the result).
"""

from __future__ import annotations

import numpy as np

from gpunn._version import __version__
from gpunn.compute.backend import to_numpy
from gpunn.errors import GpunnError
from gpunn.files import atomic_write

#: The ONNX operator set the graph is written against (every node has kept its meaning since).
OPSET = 17
#: The IR version of opset 17 (ONNX 1.12), which every ONNX Runtime since 1.12 reads.
IR_VERSION = 8
#: Hidden-layer activations -> ONNX operators.
ACTIVATION_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "identity": "Identity"}


def require_onnx():
    """Import onnx, or say how to install it."""
    try:
        import onnx
    except ImportError:
        raise GpunnError('exporting to ONNX needs the onnx package; install it with: pip install "gpunn[onnx]"') \
            from None
    return onnx


def to_onnx_model(net, classes=None):
    """The ONNX ``ModelProto`` of ``net`` (see the module docstring), checked by ``onnx.checker``.

    ``classes`` overrides the labels the ``label`` output answers with (ints or strings,
    one per output unit, e.g. a scikit-learn estimator's ``classes_``); default: the
    network's own classes, else the class index.
    """
    onnx = require_onnx()
    from onnx import helper, numpy_helper

    dtype = net.dtype
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    initializers, nodes = [], []

    def constant(name: str, value) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    current = "input"
    if net.scaler is not None and not net.scaler.identity:
        nodes.append(helper.make_node("Sub", [current, constant("scale_offset", net.scaler.offset)], ["centred"]))
        nodes.append(helper.make_node("Mul", ["centred", constant("scale_factor", net.scaler.factor)], ["scaled"]))
        current = "scaled"
    weights = [to_numpy(part) for part in net.get_weights()]
    last = net.layout.n_layers - 1
    if net.task == "regression":
        nodes += _regression_nodes(helper, net, weights, current, constant, initializers)
        return _finish(onnx, helper, net, nodes, initializers, [_regression_output(helper, net, elem)])
    for layer in range(net.layout.n_layers):
        W, b = weights[2 * layer], weights[2 * layer + 1]
        z = f"z{layer + 1}"
        nodes.append(helper.make_node("Gemm", [current, constant(f"W{layer + 1}", W), constant(f"b{layer + 1}", b)],
                                      [z]))
        out = "probabilities" if layer == last else f"a{layer + 1}"
        if layer == last and net.output_activation == "softmax":
            nodes.append(helper.make_node("Softmax", [z], [out], axis=1))
        else:
            kind = net.output_activation if layer == last else net.activation
            nodes.append(helper.make_node(ACTIVATION_OPS[kind], [z], [out]))
        current = out

    if net.multilabel:  # an indicator row: each label on its own side of 0.5
        nodes.append(helper.make_node("Greater", ["probabilities", constant("half", 0.5)], ["above"]))
        nodes.append(helper.make_node("Cast", ["above"], ["label"], to=onnx.TensorProto.INT64))
        return _finish(onnx, helper, net, nodes, initializers,
                       [helper.make_tensor_value_info("probabilities", elem, ["batch", net.sizes[-1]]),
                        helper.make_tensor_value_info("label", onnx.TensorProto.INT64, ["batch", net.sizes[-1]])])
    label_type, label_values = _label_constant(net, classes)
    if label_values is None:
        nodes.append(helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0))
    else:
        initializers.append(label_values)
        nodes.append(helper.make_node("ArgMax", ["probabilities"], ["class_index"], axis=1, keepdims=0))
        nodes.append(helper.make_node("Gather", ["classes", "class_index"], ["label"], axis=0))

    n_out = net.sizes[-1]
    return _finish(onnx, helper, net, nodes, initializers,
                   [helper.make_tensor_value_info("probabilities", elem, ["batch", n_out]),
                    helper.make_tensor_value_info("label", label_type, ["batch"])])


def _regression_nodes(helper, net, weights, current: str, constant, initializers) -> list:
    """The Gemm + activation layers of a regression network, then its targets' standardisation undone.

    ``constant`` adds an initializer in the network's dtype; the int64 one goes to ``initializers``.
    """
    from onnx import numpy_helper

    if net.target_scaling is None:
        raise ValueError("this regression network has not been fitted yet: its targets' scaling is unknown; "
                         "fit it before exporting")
    nodes, last = [], net.layout.n_layers - 1
    for layer in range(net.layout.n_layers):
        W, b = weights[2 * layer], weights[2 * layer + 1]
        z = f"z{layer + 1}"
        nodes.append(helper.make_node("Gemm", [current, constant(f"W{layer + 1}", W), constant(f"b{layer + 1}", b)],
                                      [z]))
        if layer < last:
            nodes.append(helper.make_node(ACTIVATION_OPS[net.activation], [z], [f"a{layer + 1}"]))
            current = f"a{layer + 1}"
    scaling = net.target_scaling
    nodes.append(helper.make_node("Mul", [z, constant("target_std", scaling.std)], ["spread"]))
    if scaling.ndim == 1:
        nodes.append(helper.make_node("Add", ["spread", constant("target_mean", scaling.mean)], ["values"]))
        initializers.append(numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axis_1"))  # Squeeze's axes
        nodes.append(helper.make_node("Squeeze", ["values", "axis_1"], ["prediction"]))
    else:
        nodes.append(helper.make_node("Add", ["spread", constant("target_mean", scaling.mean)], ["prediction"]))
    return nodes


def _regression_output(helper, net, elem):
    shape = ["batch"] if net.target_scaling.ndim == 1 else ["batch", net.sizes[-1]]
    return helper.make_tensor_value_info("prediction", elem, shape)


def _finish(onnx, helper, net, nodes, initializers, outputs):
    """The checked ModelProto of ``nodes`` with the graph's one input and ``outputs``."""
    graph = helper.make_graph(nodes, "gpunn_network",
                              [helper.make_tensor_value_info("input", helper.np_dtype_to_tensor_dtype(net.dtype),
                                                             ["batch", net.sizes[0]])],
                              outputs, initializers)

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gpunn",
                              producer_version=__version__, doc_string=repr(net))
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _label_constant(net, classes):
    """(the ``label`` output's element type, the ``classes`` initializer or None for plain indices)."""
    from onnx import TensorProto, helper

    classes = net.classes if classes is None else np.asarray(classes)
    if classes is None or (classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(len(classes)))):
        return TensorProto.INT64, None
    if len(classes) != net.sizes[-1]:
        raise ValueError(f"{len(classes)} classes for a network with {net.sizes[-1]} output units")
    if classes.dtype.kind in "iu":
        return TensorProto.INT64, helper.make_tensor("classes", TensorProto.INT64, [len(classes)],
                                                     classes.astype(np.int64).tolist())
    if classes.dtype.kind in "UO" and all(isinstance(c, str) for c in classes.tolist()):
        return TensorProto.STRING, helper.make_tensor("classes", TensorProto.STRING, [len(classes)],
                                                      [c.encode("utf-8") for c in classes.tolist()])
    raise ValueError(f"ONNX labels must be integers or strings, not {classes.dtype}; "
                     f"export without them, or map the classes to integers or strings first")


def export(net, path, classes=None) -> None:
    """Write ``net`` as an ONNX model to ``path``, atomically (see :func:`to_onnx_model`)."""
    data = to_onnx_model(net, classes).SerializeToString()
    atomic_write(path, lambda f: f.write(data))
