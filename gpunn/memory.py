"""How much memory gpunn may still allocate, and refusing work that needs more before allocating it.

A network or data set too large for the machine should end in one line that says
how much it needs, not in NumPy's ``MemoryError`` half-way through an allocation
(or, worse, in the kernel's out-of-memory killer once the pages are touched).  So
the big allocations are sized first and checked against :func:`available_bytes`:
the least of the memory the operating system reports as available, the process's
address-space and data-size limits (``ulimit -v``/``-d``) minus what it already
uses, and a cgroup v2 memory limit when one applies.

Limits: the figures are estimates of the dominant arrays (within a few percent of
NumPy's own peak), the check is for host memory (GPU memory is checked by CuPy when
it allocates), and where the platform reports nothing (no ``/proc``), nothing is
refused here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gpunn.errors import InsufficientMemory

try:
    import resource
except ImportError:  # Windows: no rlimits
    resource = None

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_CGROUP = Path("/sys/fs/cgroup")


def format_bytes(n: int) -> str:
    return f"{n:,} bytes ({n / 2**30:.2f} GiB)"


def available_bytes() -> int | None:
    """Bytes this process can still allocate, or None when the platform does not say."""
    candidates = [_meminfo_available(), _cgroup_headroom()]
    if resource is not None:
        usage = _statm()
        for limit, used in ((resource.RLIMIT_AS, usage[0]), (resource.RLIMIT_DATA, usage[1])):
            soft = resource.getrlimit(limit)[0]
            if soft != resource.RLIM_INFINITY and used is not None:
                candidates.append(soft - used)
    known = [c for c in candidates if c is not None]
    return max(min(known), 0) if known else None


def require(nbytes: int, what: str, hint: str) -> None:
    """Raise :class:`InsufficientMemory` when ``what`` (needing ``nbytes``) cannot fit; ``hint`` says what to do."""
    available = available_bytes()
    if available is not None and nbytes > available:
        raise InsufficientMemory(
            f"{what} needs {format_bytes(nbytes)} of memory but only {format_bytes(available)} are available; {hint}"
        )


def parameter_count(sizes) -> int:
    """Weights and biases of a fully connected network with these layer sizes."""
    return sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def network_bytes(sizes, dtype) -> int:
    """What building the network allocates: parameters and gradients in ``dtype``, and the
    float64 draw of the initial weights (the whole buffer plus a layer's temporaries)."""
    itemsize = np.dtype(dtype).itemsize
    largest_block = max((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    return parameter_count(sizes) * (2 * itemsize + 8) + 2 * 8 * largest_block


def check_network_fits(sizes, dtype) -> None:
    """Refuse, before allocating anything, a network whose parameters cannot fit in memory."""
    require(network_bytes(sizes, dtype), f"a {','.join(map(str, sizes))} network "
            f"({parameter_count(sizes):,} parameters, {np.dtype(dtype).name})",
            "use fewer or narrower layers")


def training_bytes(sizes, dtype, n_train: int, n_test: int, batch_size: int, optimizer_buffers: int,
                   eval_chunk: int = 1024) -> int:
    """What training allocates on top of the network: the samples laid out for the device
    (features, a ones column and the one-hot target per sample), the epoch's recorded
    outputs, the optimizer's buffers, and activations, deltas and scratch for one
    minibatch and one evaluation chunk."""
    itemsize = np.dtype(dtype).itemsize
    row = sizes[0] + 1 + sizes[-1]
    samples = (n_train + n_test) * row * itemsize
    record = n_train * sizes[-1] * itemsize
    optimizer = optimizer_buffers * parameter_count(sizes) * itemsize
    per_sample = 3 * sum(n + 1 for n in sizes) * itemsize
    batches = per_sample * (min(batch_size, n_train) + min(eval_chunk, max(n_train, n_test)))
    return samples + record + optimizer + batches


def check_training_fits(sizes, dtype, n_train: int, n_test: int, batch_size: int, optimizer_buffers: int) -> None:
    """Refuse training that cannot fit in memory beside the network already built."""
    require(training_bytes(sizes, dtype, n_train, n_test, batch_size, optimizer_buffers),
            f"training a {','.join(map(str, sizes))} network on {n_train:,} samples in batches of {batch_size:,}",
            "use a smaller --batch-size, fewer samples or a smaller network")


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        return os.sysconf("SC_AVPHYS_PAGES") * _PAGE
    return None


def _statm() -> tuple[int | None, int | None]:
    """(address space in use, data segment in use) in bytes, from /proc/self/statm."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[0]) * _PAGE, int(fields[5]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None, None


def _cgroup_headroom() -> int | None:
    """A cgroup v2 memory limit minus the group's usage, when one is set."""
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((_CGROUP / "memory.current").read_text())
    except (OSError, ValueError):
        return None

