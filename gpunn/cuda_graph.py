"""A training step on the GPU as one CUDA graph launch.

At batch 10 a GPU step is a dozen tiny kernels and GEMMs, and launching them from
Python costs far more than running them.  :class:`GraphedStep` records the whole
step once (gather, forward, output delta with loss and accuracy, backward, SGD
update, and the step counter's increment) on a non-blocking stream into a CUDA
graph, then replays it: one launch per step.

What changes from step to step lives in device memory, so the recorded launches can
stay the same: the epoch's sample order (reshuffled in place each epoch) and a step
counter that the graph's own ``gather_batch`` kernel reads and its last kernel
increments.  Only full batches are replayed; the epoch's short last batch, if any,
takes the ordinary path (:func:`gpunn.train.train_step`), which stays the fallback
and the reference the graph is tested against.

Limits: CuPy backend, one process (no all-reduce inside the graph); the recorded
pointers and the learning rate are fixed at capture, so a new ``fit`` records anew.
Capturing fails if anything in the step synchronizes with the host or allocates
memory, which is also how the tests prove the step does neither.
"""

from __future__ import annotations

import numpy as np


class GraphedStep:
    """One full-batch training step of ``network``, captured once and replayed per step."""

    def __init__(self, network, data, order, batch: int, loss_sum, correct, stream):
        self.network = network
        self.batch = batch
        self.stream = stream
        xp = network.backend.xp
        self.samples, self.labels = data  # samples as columns: (inputs, samples)
        self.order = order
        self.loss_sum, self.correct = loss_sum, correct
        self.step = xp.zeros((), dtype=np.int32)
        self.ws = network.workspace(batch)
        self.graph = None

    def _body(self) -> None:
        network, ws = self.network, self.ws
        kernels = network.backend.kernels
        kernels.gather_batch(self.samples, self.labels, self.order, self.step, ws.inputs, ws.labels, self.batch)
        network.forward(ws)
        network.backward(ws, self.loss_sum, self.correct)
        network.optimizer.step(network.params, network.grads, self.batch)
        kernels.advance_step(self.step)

    def capture(self) -> None:
        """Run the step once uncaptured (builds cuBLAS handles, loads kernels), then record it.

        The warm-up step changes the parameters, so it is undone: parameters and
        optimizer state are restored from copies taken before it.
        """
        network = self.network
        saved_params = network.params.copy()
        velocity = network.optimizer.velocity
        saved_velocity = None if velocity is None else velocity.copy()
        saved_loss, saved_correct = self.loss_sum.copy(), self.correct.copy()
        self._body()
        network.params[...] = saved_params
        if velocity is not None:
            velocity[...] = saved_velocity
        self.loss_sum[...] = saved_loss
        self.correct[...] = saved_correct
        self.stream.synchronize()
        cuda = network.backend.xp.cuda
        self.stream.begin_capture()
        try:
            # A buffer allocated while recording would be freed and reused while the
            # graph still writes to it: refuse any allocation, so capture fails instead.
            with cuda.using_allocator(_refuse_allocation):
                self._body()
        finally:
            self.graph = self.stream.end_capture()
        self.graph.upload(self.stream)

    def run_epoch(self, steps: int, progress=None, report_every: int = 1) -> None:
        """Replay the graph for the epoch's ``steps`` full batches, from step 0."""
        self.step.fill(0)
        for step in range(steps):
            self.graph.launch(self.stream)
            if progress is not None and step % report_every == 0:
                progress(step, steps)


def _refuse_allocation(size: int):
    raise MemoryError(f"the training step tried to allocate {size} bytes of device memory while being captured")
