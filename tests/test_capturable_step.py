"""The step a CUDA graph records holds only gpunn kernels: checked on the CPU, without a GPU.

CuPy refuses every cuBLAS call while a stream is capturing (``cupy.matmul`` included;
cupy/cupy#6290), so the graph-captured training step (:class:`gpunn.training.device_step.DeviceStep`
on the ``fused`` dense path) must not call the array module's GEMM or any other library
routine.  Here that body runs on the ``emulated`` backend (the same Python code and
the same kernel launches as on a GPU) with NumPy's library entry points made to
raise and the backend's array module replaced by one that refuses every attribute:
the body must still complete and train.  The same body on the ``cublas`` path must
trip the guard, which shows that the guard catches a library GEMM.  A change that puts
a ``matmul`` (or any ``xp.`` call) back into the captured step fails here.

Covered: the tutorial's narrow networks (784-30-10, 784-100-10 at batch 10 and 64) and
the other settings a graph must hold: tanh and ReLU, the softmax output with
cross-entropy, Adam, and SGD with momentum and per-layer step sizes.
"""

import numpy as np
import pytest

import gpunn
from gpunn.training.device_step import DeviceStep
from gpunn.training.optim import make_optimizer

#: NumPy entry points that CuPy routes through cuBLAS, cuSOLVER or cuRAND, all of which it
#: refuses during a capture.
LIBRARY_CALLS = ("matmul", "dot", "vdot", "inner", "tensordot", "einsum", "linalg", "random")


class LibraryCallInCapturedStep(AssertionError):
    """A library routine (or the array module) was used inside the captured step."""


class RefusingModule:
    """Stands in for the backend's array module: any use of it is a library call in the step."""

    def __getattr__(self, name):
        raise LibraryCallInCapturedStep(f"the captured step used the array module: xp.{name}")


def _refuse(name):
    def refused(*args, **kwargs):
        raise LibraryCallInCapturedStep(f"the captured step called numpy.{name}, a library routine "
                                        "that CuPy refuses during stream capture")
    return refused


@pytest.fixture
def refuse_library_calls(monkeypatch):
    """Within ``with refuse_library_calls(network):`` the step may launch gpunn kernels and nothing else."""
    class Guard:
        def __init__(self, network):
            self.network = network

        def __enter__(self):
            for name in LIBRARY_CALLS:
                monkeypatch.setattr(np, name, _refuse(name))
            monkeypatch.setattr(self.network.backend, "xp", RefusingModule())
            return self

        def __exit__(self, *exc):
            monkeypatch.undo()
            return False

    return Guard


def _step(sizes, batch, dense, activation="sigmoid", output="sigmoid", optimizer="sgd", settings=None):
    """A DeviceStep of a fresh emulated network over random data, and the network."""
    net = gpunn.Network(sizes, activation=activation, output_activation=output, backend="emulated", seed=2)
    net.dense = dense
    net.optimizer = make_optimizer(optimizer, net.backend, net.layout, net.dtype, settings or {"lr": 0.5})
    rng = np.random.default_rng(0)
    n = 2 * batch
    data = net.device_samples(rng.random((n, sizes[0])), rng.integers(0, sizes[-1], n))
    order = rng.permutation(n).astype(np.int64)
    loss_sum, correct = np.zeros((), np.float64), np.zeros((), np.int64)
    return DeviceStep(net, data, order, batch, loss_sum, correct), net


NARROW = [([784, 30, 10], 10), ([784, 30, 10], 64), ([784, 100, 10], 10), ([784, 100, 10], 64)]


@pytest.mark.parametrize("sizes,batch", NARROW, ids=[f"{'-'.join(map(str, s))}-batch{b}" for s, b in NARROW])
def test_fused_step_of_a_narrow_network_calls_no_library(refuse_library_calls, sizes, batch):
    body, net = _step(sizes, batch, "fused")
    assert body.capturable
    before = net.params.copy()
    with refuse_library_calls(net):
        body()
        body()
    assert int(body.step) == 2
    assert float(body.loss_sum) > 0 and 0 <= int(body.correct) <= 2 * batch
    assert np.isfinite(net.params).all() and not np.array_equal(net.params, before), "the step did not train"


SETTINGS = {
    "tanh-softmax-adam": dict(activation="tanh", output="softmax", optimizer="adam", settings={"lr": 1e-3}),
    "relu-momentum-layer-rates": dict(activation="relu", optimizer="sgd",
                                      settings={"lr": 0.1, "momentum": 0.9, "nesterov": True,
                                                "layer_rates": [0.5, 1.0, 0.25]}),
}


@pytest.mark.parametrize("options", SETTINGS.values(), ids=SETTINGS.keys())
def test_fused_step_calls_no_library_with_every_training_option(refuse_library_calls, options):
    body, net = _step([37, 19, 13, 10], 12, "fused", **options)
    with refuse_library_calls(net):
        body()
    assert int(body.step) == 1 and np.isfinite(net.params).all()


def test_the_guard_catches_a_library_gemm_in_the_step(refuse_library_calls):
    """The cuBLAS path's step calls matmul: the guard must stop it (so the tests above can fail)."""
    body, net = _step([784, 30, 10], 10, "cublas")
    assert not body.capturable
    with refuse_library_calls(net), pytest.raises(LibraryCallInCapturedStep, match="matmul"):
        body()


def test_a_graph_refuses_a_step_that_calls_the_library():
    from gpunn.training.cuda_graph import GraphedStep

    body, _ = _step([8, 4, 3], 4, "cublas")
    with pytest.raises(ValueError, match="only the fused path can be captured"):
        GraphedStep(body, stream=None)
