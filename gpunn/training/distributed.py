"""Data-parallel training across processes: MPI on CPUs, NCCL on NVIDIA GPUs.

Run K copies of the same program, each one a *rank*, started by an MPI launcher::

    mpiexec -n 4 gpunn train --distributed ...

Every rank holds the whole data set and the same initial parameters (same seed), and
shuffles the same sample order.  Each global minibatch of ``batch_size`` samples is
cut into K nearly equal parts (:func:`gpunn.training.loop.rank_share`); each rank computes the
gradient of its part, one all-reduce per step sums the flat gradient buffer across
ranks, and every rank applies the same SGD update.  The result is the single-process
run with the same batch size, up to the order in which the gradient is summed.

Two communicators implement the one method :func:`gpunn.training.loop.fit` needs,
``allreduce_sum(buf)``, in place:

:class:`MPICommunicator`
    NumPy buffers through mpi4py (``MPI_Allreduce`` with ``MPI_IN_PLACE``).
:class:`NCCLCommunicator`
    CuPy buffers through NCCL, device to device on the current CUDA stream, with no
    copy through the host.  Each rank uses the GPU of its rank on its node.  MPI is
    used only to hand NCCL's unique id from rank 0 to the others; a single rank needs
    no MPI at all.

:func:`init_distributed` picks one from the backend, and :func:`abort_on_error` makes
a failure on any rank end the whole job instead of leaving the others waiting forever
in a collective.

mpi4py and CuPy are imported only here and only when asked for: ``import gpunn``
never loads MPI or touches a GPU.  Install the MPI part with
``pip install "gpunn[distributed]"`` (mpi4py and the MPICH wheel, which puts
``mpiexec`` next to the Python interpreter).

Limits: one process per GPU; the ranks must agree on the backend (all CPU or all
GPU); validation and the final evaluation are not split, every rank computes them
in full (they are cheap next to training, and it keeps every rank's logs identical,
so callbacks such as early stopping decide the same on all ranks).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import warnings

import click
import numpy as np

from gpunn.compute.backend import ENV_VAR, BackendError, _device_count, _import_cupy, get_backend, parse_spec
from gpunn.errors import GpunnError

INSTALL_HINT = 'install it with pip install "gpunn[distributed]"'

#: Seconds a failing rank waits, after printing its error, before it aborts the job.
ABORT_GRACE_SECONDS = 0.3

#: Variables through which MPI launchers tell a process how many ranks there are.
LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def _import_mpi():
    """The ``mpi4py.MPI`` module, or ``None`` when mpi4py is not installed.

    Importing it initialises MPI (as a single rank when no launcher started us).
    An mpi4py that is installed but cannot load an MPI library is an error, not None.
    """
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    except Exception as exc:  # mpi4py is there but its MPI library is missing or broken
        raise GpunnError(f"mpi4py cannot start MPI ({exc}); {INSTALL_HINT}") from None
    return MPI


def _launcher_size() -> int:
    """How many ranks the launcher started, read from its environment (1 when none did)."""
    for name in LAUNCHER_SIZE_VARS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


class MPICommunicator:
    """Sums NumPy buffers across the ranks of an MPI communicator.

    Attributes:
        rank, size: this process's rank and the number of ranks.
        local_rank, local_size: the same among the ranks on this node (shared memory),
            which is how each rank picks its GPU.
        name: ``"mpi"``.
    """

    name = "mpi"

    def __init__(self, comm=None):
        MPI = _import_mpi()
        if MPI is None:
            raise GpunnError(f"distributed training needs mpi4py, which is not installed; {INSTALL_HINT}")
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self._in_place, self._sum = MPI.IN_PLACE, MPI.SUM

    def allreduce_sum(self, buf) -> None:
        """Replace ``buf`` on every rank by its sum over all ranks.

        ``buf`` is a C-contiguous, writable NumPy array of any shape, 0-d included
        (float32, float64, int64, ...); the sum is written into it, nothing is allocated.
        Every rank must call this with a buffer of the same shape and dtype.
        """
        self.comm.Allreduce(self._in_place, buf, op=self._sum)

    def allgather(self, value) -> list:
        """Every rank's ``value`` (a small picklable object), in rank order, on every rank."""
        return self.comm.allgather(value)

    def bcast(self, value, root: int = 0):
        """Rank ``root``'s ``value`` on every rank."""
        return self.comm.bcast(value, root=root)

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (never returns).

        First a short pause (:data:`ABORT_GRACE_SECONDS`) so that the launcher forwards
        what this rank just printed: MPICH's kills the job on ``MPI_Abort`` without
        draining the rank's output pipes.  The other ranks cannot get past their next
        collective meanwhile.  ``MPI_Abort`` then asks the launcher to kill all ranks;
        MPICH's returns to the caller while that happens, so this process exits at
        once without running any more Python code (no further collectives, no files
        written).
        """
        _flush_std()
        time.sleep(ABORT_GRACE_SECONDS)
        try:
            self.comm.Abort(code)
        finally:
            os._exit(code)


class NCCLCommunicator:
    """Sums CuPy buffers across ranks with NCCL, one GPU per rank, no host copies.

    Args:
        device_id: the CUDA device this rank trains on (the one its Network uses).
        world: the :class:`MPICommunicator` of the job, used once to broadcast NCCL's
            unique id from rank 0; ``None`` for a single rank, which needs no MPI.

    The all-reduce is queued on the current CUDA stream of the current device (the
    stream :func:`gpunn.training.loop.fit` computes the gradient on), so it neither waits for
    the device nor makes the host wait.
    """

    name = "nccl"

    def __init__(self, device_id: int, world: MPICommunicator | None = None):
        cupy, nccl = _import_nccl()
        self.rank, self.size = (world.rank, world.size) if world is not None else (0, 1)
        self.local_rank = world.local_rank if world is not None else 0
        self.device_id, self.world = device_id, world
        unique_id = nccl.get_unique_id() if self.rank == 0 else None
        if world is not None:
            unique_id = world.bcast(unique_id)
        with cupy.cuda.Device(device_id):
            self.comm = nccl.NcclCommunicator(self.size, unique_id, self.rank)
        self._cupy, self._sum = cupy, nccl.NCCL_SUM
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                       np.dtype(np.int64): nccl.NCCL_INT64}

    def allreduce_sum(self, buf) -> None:
        """Replace the CuPy array ``buf`` on every rank by its sum over all ranks.

        ``buf``: C-contiguous, float32, float64 or int64, any shape (0-d included), on
        this rank's device.  The sum happens in place on the current stream.
        """
        try:
            dtype = self._types[buf.dtype]
        except KeyError:
            raise TypeError(f"NCCL all-reduce of {buf.dtype} is not supported: use float32, float64 or int64") from None
        ptr = buf.data.ptr
        self.comm.allReduce(ptr, ptr, buf.size, dtype, self._sum, self._cupy.cuda.get_current_stream().ptr)

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (never returns); see :meth:`MPICommunicator.abort`."""
        if self.world is not None:
            self.world.abort(code)
        _flush_std()
        os._exit(code)


def _import_nccl():
    """``(cupy, cupy.cuda.nccl)``, or BackendError saying what to install."""
    cupy = _import_cupy()
    with warnings.catch_warnings():  # CuPy warns when libnccl is missing; we say so below
        warnings.simplefilter("ignore")
        from cupy.cuda import nccl
    if not nccl.available:
        raise BackendError(
            "CuPy cannot load the NCCL library that GPU data-parallel training needs; install it with "
            'pip install "nvidia-nccl-cu13>=2.27.7,<3" (nvidia-nccl-cu12 on CUDA 12), or train on the CPU '
            "with --backend numpy"
        )
    return cupy, nccl


def init_distributed(backend_spec=None):
    """Join the job and pick this rank's communicator and backend.

    Args:
        backend_spec: what the user asked for (``--backend``; ``None`` reads
            ``$GPUNN_BACKEND``, else ``auto``).

    Returns:
        ``(communicator, backend_spec_for_this_rank)``.  On the CPU (``numpy``,
        ``emulated``, or ``auto`` without a GPU) an :class:`MPICommunicator` and the
        spec (``auto`` becomes ``numpy``).  On GPUs (``cupy``, or ``auto`` with a GPU) an
        :class:`NCCLCommunicator` and ``cupy:L``, L being the rank's local rank on its
        node (``cupy:0`` where each rank sees a single GPU, e.g. a launcher that sets
        ``CUDA_VISIBLE_DEVICES`` per rank; two ranks that truly share one GPU make NCCL
        refuse with "duplicate GPU").  An explicit ``cupy:N`` is honoured only with one
        rank per node.

    Raises:
        GpunnError: mpi4py is missing, or cannot start MPI (on GPUs MPI is needed only
            for more than one rank: a single GPU rank trains without it).
        BackendError: no GPU for this rank, or no NCCL.

    Started without a launcher, the job is a single rank.  Once MPI is up, an error on
    any rank aborts the whole job (see :func:`abort_on_error`).
    """
    kind, device = parse_spec(backend_spec)
    text = str(backend_spec or os.environ.get(ENV_VAR) or "auto")
    asked = device if kind == "cupy" and ":" in text else None  # an explicit cupy:N
    try:
        MPI = _import_mpi()
    except GpunnError:
        # mpi4py is installed but cannot start MPI: one GPU rank needs no MPI, so go on without it
        if _launcher_size() > 1 or not _wants_gpu(kind):
            raise
        MPI = None
    if MPI is None:
        if not _wants_gpu(kind):
            raise GpunnError(f"distributed training on the CPU needs mpi4py, which is not installed; {INSTALL_HINT}")
        launched = _launcher_size()
        if launched > 1:
            raise GpunnError(
                f"this is one of {launched} ranks, and they need mpi4py to find each other; {INSTALL_HINT}"
            )
        device = asked if asked is not None else 0
        get_backend(f"cupy:{device}")  # a clear BackendError now rather than inside NCCL
        return NCCLCommunicator(device), f"cupy:{device}"

    world = MPICommunicator()
    with abort_on_error(world):
        on_gpu = _wants_gpu(kind)
        kinds = world.allgather("gpu" if on_gpu else "cpu")
        if len(set(kinds)) > 1:
            gpu_ranks = [r for r, k in enumerate(kinds) if k == "gpu"]
            raise GpunnError(
                f"the ranks disagree on the backend (ranks {gpu_ranks} found a GPU, the others did not); "
                f"pass the same --backend to all, e.g. --backend numpy"
            )
        if not on_gpu:
            return world, "numpy" if kind == "auto" else kind
        device = _rank_device(world, asked)
        return NCCLCommunicator(device, world), f"cupy:{device}"


def _wants_gpu(kind: str) -> bool:
    """Whether a backend kind means training on a GPU here (``auto`` asks CuPy)."""
    return kind == "cupy" or (kind == "auto" and get_backend("auto").is_gpu)


def _rank_device(world: MPICommunicator, asked: int | None) -> int:
    """The CUDA device for this rank: its local rank, or ``asked`` with one rank per node."""
    if asked is not None:
        if world.local_size > 1:
            raise GpunnError(
                f"--backend cupy:{asked} names one GPU but {world.local_size} ranks run on this node; "
                f"use --backend cupy and each rank takes the GPU of its local rank"
            )
        device = asked
    else:
        count = _device_count(_import_cupy())
        device = 0 if count == 1 else world.local_rank
        if device >= count:
            raise BackendError(
                f"rank {world.rank} is rank {world.local_rank} on its node, which has {count} GPU(s); "
                f"start at most one rank per GPU (e.g. mpiexec -ppn {count}), or use --backend numpy"
            )
    get_backend(f"cupy:{device}")  # a clear BackendError now rather than inside NCCL
    return device


@contextlib.contextmanager
def abort_on_error(communicator):
    """Make an exception on one rank end the whole job, within moments, never a hang.

    Without this, a rank that fails leaves the others blocked in their next
    all-reduce forever.  Inside the block, an exception on a job of more than one
    rank prints ``Error: rank R of K: <message>`` on stderr (with the traceback when
    it is not a user error), and calls the communicator's ``abort``, which makes the
    launcher kill every rank; the job's exit status is non-zero.  With a single rank
    the exception propagates unchanged, to be reported as usual.

    A rank killed by a signal needs no help: MPICH's ``mpiexec`` notices and kills
    the others.
    """
    try:
        yield
    except (Exception, KeyboardInterrupt) as exc:
        if communicator is None or communicator.size <= 1:
            raise
        if not isinstance(exc, (GpunnError, BackendError, ValueError, OSError, click.ClickException)):
            traceback.print_exc()
        message = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"Error: rank {communicator.rank} of {communicator.size}: {message}", file=sys.stderr, flush=True)
        communicator.abort(1)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken pipe: nothing more to save
            stream.flush()
