"""One full-batch training step that finds its batch on the device: the body a CUDA graph records.

On a kernel backend a training step is a fixed sequence of launches: gather the
batch, forward, output delta (with the loss and the correct count), backward, the
optimizer's update.  :class:`DeviceStep` makes that sequence the same at every step,
so that it can be recorded once as a CUDA graph and replayed (:mod:`gpunn.training.cuda_graph`):
what changes from step to step lives in device memory, namely the epoch's sample
order (reshuffled in place each epoch) and a step counter, which the ``gather_batch``
kernel reads and the step's last kernel increments.

With the ``fused`` dense path (:mod:`gpunn.compute.dense`) every call of a step is one of
gpunn's kernels: no library call (which CuPy would refuse during a capture), no read
of device memory, no allocation.  ``tests/test_capturable_step.py`` runs this body on
the ``emulated`` backend with the array module and its library calls made to raise,
so that a change which puts a library GEMM back into the step fails without a GPU.

Also the step of the ``launches`` path, where it runs call by call: same launches,
same numbers.  Limits: one process (no all-reduce), full batches only; the short
last batch of an epoch takes :func:`gpunn.training.loop.train_step`.
"""

from __future__ import annotations

import numpy as np


class DeviceStep:
    """The full-batch training step of ``network`` over ``data`` in the epoch's ``order``.

    Args:
        network: a network on a kernel backend, with its optimizer set.
        data: ``(samples, labels)`` from :meth:`gpunn.nn.mlp.MLP.device_samples`, or
            ``(samples, answers, weights)`` from :meth:`~gpunn.nn.mlp.MLP.device_data`
            (a regression or multilabel network's answers are its float targets).
        order: the epoch's sample order, an int64 device array, reshuffled in place.
        batch: samples per step.
        loss_sum, correct: device scalars the steps add their loss and hits to.
    """

    def __init__(self, network, data, order, batch: int, loss_sum, correct):
        self.network = network
        self.samples, self.labels, *rest = data
        weights = rest[0] if rest else None
        self.order = order
        self.batch = batch
        self.loss_sum, self.correct = loss_sum, correct
        with network.backend.device():
            #: the number of the step being taken, in device memory
            self.step = network.backend.xp.zeros((), dtype=np.int32)
        self.ws = network.workspace(batch, weights is not None)
        #: the weights and their workspace buffer as (1, n) and (1, batch) rows, for gather_columns
        self.weight_rows = None if weights is None else (weights.reshape(1, -1), self.ws.weights.reshape(1, -1))

    @property
    def capturable(self) -> bool:
        """Whether every call of the step is a gpunn kernel (the ``fused`` dense path)."""
        return self.network.sample_layout.products.capturable

    def __call__(self) -> None:
        """Take one step: the batch at ``order[step * batch:]``, then ``step += 1``, all on the device."""
        network, ws = self.network, self.ws
        kernels = network.backend.kernels
        if ws.targets is not None:  # float targets (regression, multilabel) are gathered like the samples
            kernels.gather_columns(self.samples, self.order, self.step, ws.inputs, self.batch)
            kernels.gather_columns(self.labels, self.order, self.step, ws.targets, self.batch)
        else:
            kernels.gather_batch(self.samples, self.labels, self.order, self.step, ws.inputs, ws.labels, self.batch)
        if self.weight_rows is not None:
            source, buffer = self.weight_rows
            kernels.gather_columns(source, self.order, self.step, buffer, self.batch)
        network.forward(ws)
        network.backward(ws, self.loss_sum, self.correct)
        network.optimizer.step(network.params, network.grads, self.batch)
        kernels.advance_step(self.step)

    def run_epoch(self, steps: int, progress=None, report_every: int = 1) -> None:
        """Take the epoch's first ``steps`` full-batch steps, call by call, from step 0."""
        self.step.fill(0)
        for step in range(steps):
            self()
            if progress is not None and step % report_every == 0:
                progress(step, steps)
