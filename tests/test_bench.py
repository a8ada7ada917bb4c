"""``gpunn bench``: a tiny run through every peer, and the peers' training step checked against gpunn."""

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

from gpunn.cli.main import cli
from gpunn.network import Network
from gpunn.bench.peers import PEERS, Config, Problem

HAVE_THREADPOOLCTL = importlib.util.find_spec("threadpoolctl") is not None


def test_quick_bench_runs_every_peer_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--configs", "A", "--samples", "40", "--epochs", "1", "--json-out", str(out)]
    if HAVE_THREADPOOLCTL:
        args += ["--threads", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output

    report = json.loads(out.read_text())
    assert report["data"]["samples"] == 40 and "synthetic" in report["data"]["description"]
    for key in ("date", "cpu_count", "versions", "numpy_blas"):
        assert key in report["machine"]
    assert report["threads"]["requested"] == (1 if HAVE_THREADPOOLCTL else None)
    assert list(report["configs"]) == ["A"]  # configurations asked for by name: D is not added

    peers = report["configs"]["A"]["peers"]
    assert set(peers) == set(PEERS)
    for name, record in peers.items():
        if PEERS[name].unavailable() is not None:
            assert record["status"] == "absent" and record["reason"], name
            continue
        assert record["status"] == "ok", (name, record)
        assert len(record["samples_per_second"]) == 1 and record["median_samples_per_second"] > 0
        assert all(s > 0 for s in record["seconds"]) and record["samples"][0] > 0
        if peers[record["compared_with"]]["status"] == "ok":
            assert record["gpunn_speedup"] > 0
        assert name in result.stdout  # the table names every peer
    assert peers["textbook"]["samples"] == [report["configs"]["A"]["textbook_samples_per_epoch"]]
    assert report["configs"]["A"]["gpunn_time_over_floor"]["cpu"] > 0
    cost = peers["gpunn-numpy"]["fit_fixed_cost"]
    assert cost["fit_epochs0_seconds"] > 0 and cost["astype_copy_seconds"] > 0
    assert cost["ratio"] == pytest.approx(cost["fit_epochs0_seconds"] / cost["astype_copy_seconds"])
    summary = next(line for line in result.stdout.splitlines() if line.startswith("  gpunn-numpy:"))
    assert "x the GEMM floor" in summary and "x numpy-obvious" in summary
    assert f"{cost['ratio']:.1f}x one X.astype(float32) copy" in summary


def test_unknown_peer_or_config_is_a_usage_error():
    for option, value in (("--peers", "gpunn-numpy,tensorflow"), ("--configs", "A,Z")):
        result = CliRunner().invoke(cli, ["bench", "--quick", option, value])
        assert result.exit_code == 2
        assert value.split(",")[-1].lower() in result.output.lower()


TRAINERS = ["torch-cpu", "numpy-obvious", "textbook"]


@pytest.mark.parametrize("name", TRAINERS)
def test_peer_takes_the_same_sgd_step_as_gpunn(name):
    """Same data, same start, one minibatch: every trainer must land on gpunn's parameters."""
    reason = PEERS[name].unavailable()
    if reason:
        pytest.skip(reason)
    config = Config("T", (20, 16, 12, 10), 8, 3.0)
    rng = np.random.default_rng(1)
    X = rng.random((8, 20), dtype=np.float32)
    labels = rng.integers(0, 10, 8)
    net = Network(config.sizes, init="scaled", backend="numpy", seed=3)
    start = net.get_weights()
    net.fit(X, labels, epochs=1, batch_size=8, lr=config.lr, shuffle=False)

    peer = PEERS[name](Problem(config, X, labels, start, seed=0, textbook_samples=8))
    index = np.arange(8)
    if name.startswith("torch"):
        import torch

        index = torch.from_numpy(index)
    peer.train_batch(index)
    for got, want, before in zip(peer.parameters(), net.get_weights(), start):
        assert not np.allclose(want, before)  # the step moved every parameter block
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_gpunn_records_say_which_dense_and_step_path_ran_and_the_step_time(monkeypatch):
    """The GPU peers' records name the dense path, why, and the step path; every record a step time.

    Run here with the emulated backend standing in for CuPy (same kernels, no device).
    """
    from gpunn.bench import race as bench
    from gpunn.bench import peers

    class EmulatedFusedPeer(peers.GpunnPeer):
        name = "gpunn-emulated-fused"
        backend_spec = "emulated"
        dense = "fused"

    monkeypatch.setitem(PEERS, EmulatedFusedPeer.name, EmulatedFusedPeer)
    config = Config("T", (20, 16, 10), 8, 3.0)
    X, labels = bench.synthetic_data(20, 0)
    X = X[:, :20]
    problem = Problem(config, X, labels, bench.initial_weights(config, 0), seed=0, textbook_samples=8)
    records = bench.race(problem, [EmulatedFusedPeer.name, "gpunn-numpy"], epochs=1, settle=0, log=lambda _: None)
    fused, numpy_record = records[EmulatedFusedPeer.name], records["gpunn-numpy"]
    assert (fused["dense"], fused["dense_source"], fused["step"]) == ("fused", "fit(dense=)", "launches")
    assert (numpy_record["dense"], numpy_record["step"]) == (None, "numpy")
    for record in (fused, numpy_record):  # 20 samples in batches of 8: 3 steps per epoch
        assert record["median_step_us"] == pytest.approx(record["seconds"][0] / 3 * 1e6)
