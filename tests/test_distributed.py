"""Data-parallel training (gpunn.training.distributed) on 2 CPU ranks under MPICH's mpiexec.

The jobs run as subprocesses of ``mpiexec -n 2`` (the one installed next to this
Python by the ``mpich`` wheel of ``gpunn[distributed]``), each with a bounded
timeout and one BLAS thread per rank.  Without mpi4py or that mpiexec the MPI tests
skip, except on CI (``$CI`` set), where they fail.

Equivalence: a K-rank run computes each minibatch's gradient as a sum of K partial
sums instead of one, so it matches the single-process run only up to rounding: the
weights and losses are compared by the rounding rule of tests/rounding.py, within the
tolerance of the whole training run (``training_terms``).  Measured: float64 drifts by
at most 5e-15 absolute after 3 epochs of digits, float32 by about 1e-6.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import types
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from gpunn import Network, load_dataset
from gpunn.training.loop import rank_share
from rounding import assert_values_agree, training_terms

HERE = Path(__file__).resolve().parent
WORKER = HERE / "dist_worker.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
#: Seconds any one job may take; a hang would otherwise block the suite.
JOB_TIMEOUT = 60
SIZES, SEED, LR = [64, 30, 10], 1, 3.0
#: gpunn train's default --batch-size
CLI_BATCH = 10


def _missing(reason: str) -> None:
    """Skip, or on CI (``$CI`` set), where MPI must be installed, fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} [CI is set: the distributed extra must be installed there]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def mpiexec() -> str:
    """The venv's mpiexec, after checking mpi4py is importable (without starting MPI here)."""
    if find_spec("mpi4py") is None:
        _missing('mpi4py is not installed (pip install "gpunn[distributed]")')
    if not MPIEXEC.exists():
        _missing(f'no mpiexec next to {sys.executable} (pip install "gpunn[distributed]" brings MPICH\'s)')
    return str(MPIEXEC)


def run_job(args, timeout=JOB_TIMEOUT, env=None) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``args`` in its own process group; kill the whole group if it outlives ``timeout``."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                **(env or {})}
    full_env.pop("GPUNN_BACKEND", None)
    started = time.monotonic()
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"job did not end within {timeout} s (a hang): {' '.join(map(str, args))}\n{err[-2000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err), time.monotonic() - started


def gpunn_train(mpiexec, ranks, *options):
    return [mpiexec, "-n", ranks, sys.executable, "-m", "gpunn", "train", "--distributed", "--backend", "numpy",
            *options]


def reference(dtype, batch_size, epochs, momentum=0.0, start=None) -> Network:
    """The single-process run the distributed runs must reproduce (``epochs`` in total, counting ``start``'s)."""
    data = load_dataset("digits")
    net = start or Network(SIZES, init="scaled", backend="numpy", dtype=dtype, seed=SEED)
    net.fit(data.X_train, data.y_train, epochs=epochs - net.epochs_done, batch_size=batch_size, lr=LR,
            momentum=momentum)
    return net


def assert_runs_agree(got, losses, expected: Network, batch_size: int, epochs: int) -> None:
    """A distributed run's parameters (and losses) against a single-process run's, by the rounding rule."""
    n = len(load_dataset("digits").y_train)
    terms = training_terms(SIZES, epochs * -(-n // batch_size), batch_size)
    assert_values_agree(got, expected.params, expected.dtype, terms, what="parameters")
    if losses is not None:
        assert_values_agree(losses, expected.history.history["loss"], expected.dtype, terms, what="losses")


# -- rank_share: pure arithmetic ------------------------------------------------------------
def test_rank_share_covers_the_batch_with_sizes_differing_by_at_most_one():
    for batch in range(1, 70):
        for ranks in range(1, 12):
            shares = [rank_share(batch, rank, ranks) for rank in range(ranks)]
            assert shares[0][0] == 0 and shares[-1][1] == batch
            assert all(hi == lo for (_, hi), (lo, _) in zip(shares, shares[1:])), "contiguous, no gaps"
            sizes = [hi - lo for lo, hi in shares]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


# -- without MPI --------------------------------------------------------------------------
def test_importing_gpunn_loads_no_mpi():
    code = "import sys, gpunn, gpunn.training.distributed; assert 'mpi4py' not in sys.modules and 'cupy' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=JOB_TIMEOUT).returncode == 0


def test_missing_mpi4py_is_a_one_line_error_naming_the_extra(monkeypatch):
    from gpunn.training import distributed
    from gpunn.errors import GpunnError

    monkeypatch.setattr(distributed, "_import_mpi", lambda: None)
    with pytest.raises(GpunnError, match=r'pip install "gpunn\[distributed\]"'):
        distributed.init_distributed("numpy")


class _FakeNccl:
    """Stands in for cupy.cuda.nccl to check the calls NCCLCommunicator makes (real NCCL needs a GPU)."""

    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_INT64, NCCL_SUM = 7, 8, 4, 0
    calls: list = []

    @staticmethod
    def get_unique_id():
        return b"\x01" * 128

    class NcclCommunicator:
        def __init__(self, ndev, unique_id, rank):
            _FakeNccl.calls.append(("init", ndev, unique_id, rank))

        def allReduce(self, send, recv, count, dtype, op, stream):
            _FakeNccl.calls.append(("allReduce", send, recv, count, dtype, op, stream))


class _FakeCupy:
    class cuda:
        Device = staticmethod(lambda device_id: contextlib.nullcontext())
        get_current_stream = staticmethod(lambda: types.SimpleNamespace(ptr=0xABC))


def test_single_gpu_rank_needs_no_mpi_and_reduces_in_place_on_the_current_stream(monkeypatch):
    from gpunn.training import distributed
    from gpunn.errors import GpunnError

    _FakeNccl.calls = []
    monkeypatch.setattr(distributed, "_import_mpi", lambda: None)
    monkeypatch.setattr(distributed, "_import_nccl", lambda: (_FakeCupy, _FakeNccl))
    monkeypatch.setattr(distributed, "get_backend", lambda spec: None)
    for name in distributed.LAUNCHER_SIZE_VARS:
        monkeypatch.delenv(name, raising=False)
    communicator, spec = distributed.init_distributed("cupy")
    assert (spec, communicator.rank, communicator.size) == ("cupy:0", 0, 1)
    assert _FakeNccl.calls == [("init", 1, b"\x01" * 128, 0)]
    for dtype, nccl_type in ((np.float32, 7), (np.float64, 8), (np.int64, 4)):
        buf = types.SimpleNamespace(dtype=np.dtype(dtype), size=5, data=types.SimpleNamespace(ptr=1234))
        communicator.allreduce_sum(buf)
        assert _FakeNccl.calls[-1] == ("allReduce", 1234, 1234, 5, nccl_type, 0, 0xABC)
    with pytest.raises(TypeError, match="float16"):
        communicator.allreduce_sum(types.SimpleNamespace(dtype=np.dtype(np.float16), size=1, data=None))
    monkeypatch.setenv("PMI_SIZE", "2")  # started as one of 2 ranks, but without mpi4py
    with pytest.raises(GpunnError, match="one of 2 ranks"):
        distributed.init_distributed("cupy")


def test_single_gpu_rank_trains_even_where_mpi4py_cannot_start_mpi(monkeypatch):
    """mpi4py installed without a working MPI library is no obstacle to one GPU rank."""
    from gpunn.training import distributed
    from gpunn.errors import GpunnError

    def broken_mpi():
        raise GpunnError("mpi4py cannot start MPI (libmpi.so.12: cannot open shared object file)")

    _FakeNccl.calls = []
    monkeypatch.setattr(distributed, "_import_mpi", broken_mpi)
    monkeypatch.setattr(distributed, "_import_nccl", lambda: (_FakeCupy, _FakeNccl))
    monkeypatch.setattr(distributed, "get_backend", lambda spec: None)
    for name in distributed.LAUNCHER_SIZE_VARS:
        monkeypatch.delenv(name, raising=False)
    communicator, spec = distributed.init_distributed("cupy")
    assert (communicator.name, communicator.size, spec) == ("nccl", 1, "cupy:0")
    assert _FakeNccl.calls == [("init", 1, b"\x01" * 128, 0)]
    # ... but the CPU, or more than one rank, needs MPI: the error stands
    with pytest.raises(GpunnError, match="cannot start MPI"):
        distributed.init_distributed("numpy")
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(GpunnError, match="cannot start MPI"):
        distributed.init_distributed("cupy")


# -- equivalence with the single-process run -------------------------------------------------
RUNS = [
    {"name": "f64_b10", "dtype": "float64", "batch_size": 10, "epochs": 3},  # last batch 8 of 1348
    {"name": "f32_b10", "dtype": "float32", "batch_size": 10, "epochs": 3},
    {"name": "f64_b7_momentum", "dtype": "float64", "batch_size": 7, "epochs": 3, "momentum": 0.5},  # 4+3 split
    {"name": "f64_b3", "dtype": "float64", "batch_size": 3, "epochs": 2},  # last batch 1: rank 1's share is empty
    {"name": "f64_one_batch", "dtype": "float64", "batch_size": 2000, "epochs": 2},  # one step per epoch
]


@pytest.fixture(scope="module")
def two_rank_runs(mpiexec, tmp_path_factory):
    """Every run of RUNS (plus a checkpoint round trip) trained once on 2 ranks; returns the output folder."""
    from gpunn.saving.model_file import save

    out = tmp_path_factory.mktemp("dist")
    save(reference("float64", 10, 1), out / "one_rank_epoch1.npz")  # a single-process checkpoint for 2 ranks
    runs = RUNS + [
        {"name": "resumed_on_2", "dtype": "float64", "batch_size": 10, "epochs": 3,
         "load": str(out / "one_rank_epoch1.npz")},
        {"name": "saved_by_2", "dtype": "float64", "batch_size": 10, "epochs": 2,
         "save": str(out / "two_ranks_epoch2.npz")},
    ]
    job, _ = run_job([mpiexec, "-n", 2, sys.executable, WORKER, out, json.dumps(runs)])
    assert job.returncode == 0, job.stderr
    return out


@pytest.mark.parametrize("run", RUNS, ids=[r["name"] for r in RUNS])
def test_two_ranks_reproduce_the_single_process_run(two_rank_runs, run):
    expected = reference(run["dtype"], run["batch_size"], run["epochs"], run.get("momentum", 0.0))
    got = np.load(two_rank_runs / f"{run['name']}.npy")
    losses = json.loads((two_rank_runs / f"{run['name']}.json").read_text())
    assert_runs_agree(got, losses, expected, run["batch_size"], run["epochs"])


def test_checkpoints_resume_under_a_different_rank_count(two_rank_runs):
    from gpunn.network import load

    straight = reference("float64", 10, 3)
    # written by 1 rank, resumed on 2
    assert_runs_agree(np.load(two_rank_runs / "resumed_on_2.npy"), None, straight, 10, 3)
    # written by rank 0 of 2, resumed on 1
    resumed = reference("float64", 10, 3, start=load(two_rank_runs / "two_ranks_epoch2.npz", backend="numpy"))
    assert_runs_agree(resumed.params, None, straight, 10, 3)


def test_cli_rank_0_alone_reports_and_saves_and_its_files_resume_on_any_rank_count(mpiexec, tmp_path):
    from gpunn.network import load

    options = ["--epochs", 2, "--dtype", "float64", "--layers", "64,30,10", "--json", "--quiet"]
    job, _ = run_job(gpunn_train(mpiexec, 2, *options, "--output", tmp_path / "two.npz"))
    assert job.returncode == 0, job.stderr
    lines = job.stdout.splitlines()
    assert len(lines) == 1, f"only rank 0 prints: {lines}"
    summary = json.loads(lines[0])
    assert summary["ranks"] == 2 and summary["communicator"] == "mpi" and summary["epochs"] == 2
    single, _ = run_job([sys.executable, "-m", "gpunn", "train", "--backend", "numpy", *options,
                         "--output", tmp_path / "one.npz"])
    assert single.returncode == 0, single.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.npz", "two.npz"], "no stray files from rank 1"
    one = load(tmp_path / "one.npz")
    assert_runs_agree(load(tmp_path / "two.npz").params, None, one, CLI_BATCH, 2)
    # --resume across rank counts: rank 0's file on 1 process, the 1-process file on 2 ranks
    more = ["--epochs", 3, "--json", "--quiet"]
    job, _ = run_job([sys.executable, "-m", "gpunn", "train", "--resume", tmp_path / "two.npz", *more,
                      "--output", tmp_path / "two_then_one.npz"])
    assert job.returncode == 0, job.stderr
    job, _ = run_job(gpunn_train(mpiexec, 2, "--resume", tmp_path / "one.npz", *more,
                                 "--output", tmp_path / "one_then_two.npz"))
    assert job.returncode == 0, job.stderr
    one_then_two = load(tmp_path / "one_then_two.npz")
    assert_runs_agree(load(tmp_path / "two_then_one.npz").params, None, one_then_two, CLI_BATCH, 3)


def test_cli_distributed_without_mpiexec_is_one_rank(mpiexec):
    job, _ = run_job([sys.executable, "-m", "gpunn", "train", "--distributed", "--backend", "numpy",
                      "--epochs", 1, "--json", "--quiet"])
    assert job.returncode == 0, job.stderr
    assert json.loads(job.stdout.splitlines()[-1])["ranks"] == 1


# -- faults: the job ends, never hangs ----------------------------------------------------
def test_batch_smaller_than_ranks_is_a_clear_error(mpiexec):
    job, _ = run_job(gpunn_train(mpiexec, 2, "--batch-size", 1, "--epochs", 1))
    assert job.returncode != 0
    assert "cannot be split across 2 ranks" in job.stderr
    assert "Traceback" not in job.stderr


def test_cli_error_on_one_rank_aborts_the_job(mpiexec):
    """Rank 1 alone fails (a too-small output layer) while rank 0 waits in its first all-reduce."""
    common = [sys.executable, "-m", "gpunn", "train", "--distributed", "--backend", "numpy", "--epochs", 30]
    job, seconds = run_job([mpiexec, "-n", 1, *common, ":", "-n", 1, *common, "--layers", "64,30,5"])
    assert job.returncode != 0
    assert "Error: rank 1 of 2:" in job.stderr and "the last 10" in job.stderr
    assert "Traceback" not in job.stderr
    assert "test accuracy" not in job.stdout
    assert seconds < 30


def test_exception_mid_training_aborts_the_job(mpiexec, tmp_path):
    runs = [{"name": "doomed", "dtype": "float64", "batch_size": 10, "epochs": 3}]
    job, _ = run_job([mpiexec, "-n", 2, sys.executable, WORKER, tmp_path, json.dumps(runs)],
                     env={"GPUNN_TEST_FAULT": "raise:1"})
    assert job.returncode != 0
    assert "Error: rank 1 of 2: injected failure after the first epoch" in job.stderr
    assert not (tmp_path / "doomed.npy").exists(), "rank 0 must not finish and save"


def test_killed_rank_ends_the_job(mpiexec, tmp_path):
    runs = [{"name": "doomed", "dtype": "float64", "batch_size": 10, "epochs": 3}]
    job, _ = run_job([mpiexec, "-n", 2, sys.executable, WORKER, tmp_path, json.dumps(runs)],
                     env={"GPUNN_TEST_FAULT": "kill:1"}, timeout=30)
    assert job.returncode != 0
    assert "signal 9" in job.stdout + job.stderr  # hydra reports the killed rank, then cleans up the rest
    assert not (tmp_path / "doomed.npy").exists()
