"""A training step on the GPU as one CUDA graph launch.

At batch 10 a GPU step is a dozen tiny kernels, and launching them from Python costs
far more than running them.  :class:`GraphedStep` records a
:class:`~gpunn.training.device_step.DeviceStep` once on a non-blocking stream into a CUDA graph,
then replays it: one launch per step.

Only a step made of gpunn's own kernels can be recorded: CuPy refuses every cuBLAS
call while a stream is capturing (CuPy 14.2, ``cupy_backends/cuda/libs/cublas.pyx``,
``setStream``, which raises ``NotImplementedError`` when ``runtime.streamIsCapturing``;
cupy/cupy#6290), and ``cupy.matmul`` always goes through it.  So
:func:`gpunn.training.loop.fit` captures only the ``fused`` dense path
(:attr:`DeviceStep.capturable`) and never tries otherwise.

No warm-up step precedes the capture: gpunn's kernels are compiled, loaded and looked
up when the backend's kernels are made (``cupy.RawModule.get_function``), every buffer
the step touches exists before (workspace, optimizer state, the step counter, the
output delta's reduction scratch), and recording a launch does not execute it, so the
parameters are untouched until the first replay.

What this relies on in CuPy 14.2: ``Stream.begin_capture`` captures in relaxed mode by
default and ``end_capture`` returns an instantiated ``cupy.cuda.Graph``
(cupy/cuda/stream.pyx, ``_BaseStream.begin_capture``/``end_capture``); ``Graph.upload``
and ``Graph.launch`` take the stream to use (cupy/cuda/graph.pyx); kernels are launched
on the current stream, which ``with stream:`` sets (cupy/cuda/function.pyx, ``_launch``
via ``_get_stream``); ``cupy.cuda.using_allocator`` swaps the thread's allocator for the
block (cupy/cuda/__init__.py).

Limits: CuPy backend, one process (no all-reduce inside the graph); the recorded
pointers and the learning rate are fixed at capture, so a new ``fit`` records anew.
Capturing fails if anything in the step synchronizes with the host or allocates
memory, which is also how the GPU tests prove that the step does neither.
"""

from __future__ import annotations

import contextlib


class GraphedStep:
    """``body`` (a capturable :class:`~gpunn.training.device_step.DeviceStep`) recorded on ``stream``, replayed per step."""

    def __init__(self, body, stream):
        if not body.capturable:
            raise ValueError(f"a step on the {body.network.dense!r} dense path calls a library GEMM, which CuPy "
                             "refuses during stream capture; only the fused path can be captured")
        self.body = body
        self.stream = stream
        self.graph = None

    def capture(self) -> None:
        """Record one step of ``body`` on ``self.stream`` (made current here) and upload the graph.

        Refuses any device allocation while recording: a buffer allocated then would be
        freed and reused while the graph still writes to it.
        """
        cuda = self.body.network.backend.xp.cuda
        with self.stream:  # the launches are recorded on the current stream: make it ours
            self.stream.begin_capture()
            try:
                with cuda.using_allocator(_refuse_allocation):
                    self.body()
            except BaseException:
                with contextlib.suppress(Exception):  # the capture is void; report the first error
                    self.stream.end_capture()
                raise
            graph = self.stream.end_capture()
            graph.upload(self.stream)
        self.graph = graph

    def run_epoch(self, steps: int, progress=None, report_every: int = 1) -> None:
        """Replay the graph for the epoch's ``steps`` full batches, from step 0."""
        with self.stream:
            self.body.step.fill(0)
        for step in range(steps):
            self.graph.launch(self.stream)
            if progress is not None and step % report_every == 0:
                progress(step, steps)


def _refuse_allocation(size: int):
    raise MemoryError(f"the training step tried to allocate {size} bytes of device memory while being captured")
