"""The training trajectory (recording, memory bound, model files) and the loss landscape computed from it."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import gpunn
from gpunn.explain import landscape
from gpunn.cli.main import cli
from gpunn.training.trajectory import Trajectory, TrajectoryRecorder

from rounding import assert_accuracies_agree, assert_values_agree, network_terms
from test_cli_model import PNG_MAGIC, assert_one_line_error, needs_matplotlib


@pytest.fixture(scope="module")
def digits():
    data = gpunn.load_dataset("digits")
    return data.X_train[:300], data.y_train[:300]


def trained(digits, epochs=4, recorder=True, **options):
    net = gpunn.Network([64, 12, 10], dtype="float64", backend="numpy", seed=1, **options)
    net.fit(*digits, epochs=epochs, batch_size=20, lr=2.0, callbacks=[TrajectoryRecorder()] if recorder else None)
    return net


# -- recording ------------------------------------------------------------------------------------
def test_recorder_keeps_the_start_and_every_epoch(digits):
    first = gpunn.Network([64, 12, 10], dtype="float64", backend="numpy", seed=1).params.copy()
    net = trained(digits)
    assert net.trajectory.epochs == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(net.trajectory.params[0], first)
    np.testing.assert_array_equal(net.trajectory.params[-1], net.params)
    assert len({snapshot.tobytes() for snapshot in net.trajectory.snapshots}) == 5  # copies, not one view


def test_memory_bound_thins_evenly_and_keeps_both_ends(digits):
    net = gpunn.Network([64, 12, 10], backend="numpy", seed=1)
    net.fit(*digits, epochs=20, batch_size=100, callbacks=[TrajectoryRecorder(max_snapshots=5)])
    assert net.trajectory.epochs == [0, 8, 16, 20]
    np.testing.assert_array_equal(net.trajectory.params[-1], net.params)
    snapshot_bytes = net.layout.size * net.dtype.itemsize
    net = gpunn.Network([64, 12, 10], backend="numpy", seed=1)
    net.fit(*digits, epochs=7, batch_size=100, callbacks=[TrajectoryRecorder(max_bytes=3 * snapshot_bytes)])
    assert net.trajectory.epochs == [0, 4, 7] and net.trajectory.params.nbytes <= 3 * snapshot_bytes


def test_thinning_rule():
    trajectory = Trajectory()
    for epoch in range(12):
        trajectory.add(epoch, np.full(3, float(epoch)), limit=4)
        assert len(trajectory) <= 4 and trajectory.epochs[0] == 0 and trajectory.epochs[-1] == epoch
    assert trajectory.epochs == [0, 4, 8, 11] and trajectory.every == 4
    assert [s[0] for s in trajectory.snapshots] == [0, 4, 8, 11]
    assert Trajectory.from_arrays(trajectory.epochs, trajectory.params).every == 4


def test_trajectory_survives_the_model_file_and_resuming_continues_it(digits, tmp_path):
    net = trained(digits, epochs=3)
    net.save(tmp_path / "half.npz")
    loaded = gpunn.load(tmp_path / "half.npz", backend="numpy")
    assert loaded.trajectory.epochs == [0, 1, 2, 3]
    np.testing.assert_array_equal(loaded.trajectory.params, net.trajectory.params)
    loaded.fit(*digits, epochs=2, batch_size=20, lr=2.0, callbacks=[TrajectoryRecorder()])
    straight = trained(digits, epochs=5)
    assert loaded.trajectory.epochs == straight.trajectory.epochs == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(loaded.trajectory.params, straight.trajectory.params)
    plain = gpunn.Network([64, 12, 10], backend="numpy")
    plain.save(tmp_path / "plain.npz")
    assert gpunn.load(tmp_path / "plain.npz").trajectory is None


@pytest.mark.parametrize("change,fragment", [
    (lambda a: a.pop("trajectory_epochs"), "without its partner"),
    (lambda a: a.update(trajectory=a["trajectory"][:, :-1]), "(snapshots, 910) float64 array"),
    (lambda a: a.update(trajectory=a["trajectory"].astype(np.float32)), "float64 array, got float32"),
    (lambda a: a.update(trajectory_epochs=a["trajectory_epochs"][::-1].copy()), "must increase"),
    (lambda a: a.update(trajectory_epochs=a["trajectory_epochs"] + 5), "at most epochs_done (2)"),
    (lambda a: a.update(trajectory_epochs=a["trajectory_epochs"].astype(np.int32)), "int64 values"),
])
def test_bad_trajectories_are_refused_in_one_line(digits, tmp_path, change, fragment):
    net = trained(digits, epochs=2)
    net.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as archive:
        arrays = dict(archive)
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(gpunn.ModelFileError, match="inconsistent|incomplete") as error:
        gpunn.load(tmp_path / "bad.npz")
    assert fragment in str(error.value) and "\n" not in str(error.value)


# -- the landscape ----------------------------------------------------------------------------------
@pytest.mark.parametrize("activation,output,scale", [("sigmoid", "sigmoid", "none"), ("relu", "softmax", "none"),
                                                     ("tanh", "sigmoid", "standard")])
def test_the_planes_origin_is_the_model_and_the_path_ends_there(digits, activation, output, scale):
    net = trained(digits, activation=activation, output_activation=output, scale=scale)
    assert (net.scaler.method == "standard") == (scale == "standard")  # raw X in, the net's own scaling applied
    result = landscape.compute(net, *digits, resolution=7, samples=200, seed=2)
    X, y = landscape._subset(*digits, 200, 2)
    model = net.evaluate(X, y)
    i, j = list(result.alphas).index(0.0), list(result.betas).index(0.0)
    assert result.loss[j, i] == pytest.approx(model["loss"], rel=1e-10)
    assert result.accuracy[j, i] == model["accuracy"]
    assert result.method == "pca" and result.path_epochs == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(result.path[-1], [0.0, 0.0])
    assert result.path[0] @ result.path[0] > 0 and sum(result.explained) <= 1 + 1e-12
    assert result.path_loss[-1] == pytest.approx(model["loss"], rel=1e-10)
    # the grid covers the whole path
    assert result.alphas.min() < result.path[:, 0].min() and result.alphas.max() > result.path[:, 0].max()
    # the line from the initial weights: alpha 0 is the start of the path, alpha 1 the model
    alphas = list(result.interpolation_alphas)
    assert result.interpolation_loss[alphas.index(1.0)] == pytest.approx(model["loss"], rel=1e-10)
    start = gpunn.Network(net.sizes, activation=activation, output_activation=output, dtype="float64", seed=1)
    start.scaler = net.scaler
    assert result.interpolation_loss[alphas.index(0.0)] == pytest.approx(start.evaluate(X, y)["loss"], rel=1e-10)


@pytest.mark.parametrize("output,loss", [("sigmoid", "quadratic"), ("sigmoid", "cross_entropy"),
                                         ("softmax", "cross_entropy")])
def test_batched_losses_equal_the_networks_own(digits, output, loss, monkeypatch):
    net = gpunn.Network([64, 9, 7, 10], activation="tanh", output_activation=output, loss=loss, dtype="float64",
                        backend="numpy", seed=4)
    thetas = net.params + np.random.default_rng(5).normal(scale=0.5, size=(6, net.layout.size))
    X, y = digits
    want, scores = [], []
    for theta in thetas:
        net.params[...] = theta
        want.append(net.evaluate(X, y))
        scores.append(net.predict_proba(X))
    # batched products against the network's own: two computations, the rounding rule (the mean loss adds
    # up one term per sample)
    terms = network_terms(net.sizes) + len(X)
    got_loss, got_accuracy = landscape.losses(net, thetas, X, y)  # all six vectors in one chunk
    assert_values_agree(got_loss, [w["loss"] for w in want], net.dtype, terms, what="losses")
    for got, w, s in zip(got_accuracy, want, scores):
        assert_accuracies_agree(got, w["accuracy"], s, net.dtype, terms)
    monkeypatch.setattr(landscape, "CHUNK_BYTES", 1)  # one vector per chunk: other GEMM shapes, the same numbers
    assert_values_agree(landscape.losses(net, thetas, X, y)[0], got_loss, net.dtype, terms, what="losses")


def test_without_a_trajectory_the_plane_is_random_and_filter_normalised(digits):
    net = trained(digits, recorder=False)
    directions = landscape.random_directions(net, seed=3)
    for direction in directions:
        for block, own in zip(net.layout.blocks(direction), net.blocks):
            np.testing.assert_allclose(np.linalg.norm(block[:-1], axis=0), np.linalg.norm(own[:-1], axis=0))
            assert not block[-1].any()  # biases stay put
    result = landscape.compute(net, *digits, resolution=5, samples=100)
    assert result.method == "random" and result.path is None and result.explained is None
    assert result.alphas[0] == -1 and result.alphas[-1] == 1 and 0.0 in result.alphas


def test_a_straight_path_gets_an_orthogonal_second_direction():
    final = np.zeros(5)
    snapshots = np.array([[2.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0], final])
    directions, explained = landscape.pca_directions(snapshots, final)
    assert explained == (1.0, 0.0)
    np.testing.assert_allclose(directions @ directions.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(landscape.project(snapshots, final, directions)[:, 1], 0, atol=1e-12)


# -- the command line -------------------------------------------------------------------------------
def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@needs_matplotlib
def test_train_records_and_plot_draws_the_landscape(tmp_path):
    model = tmp_path / "m.npz"
    result = run("train", "--layers", "64,8,10", "--epochs", 3, "--backend", "numpy", "--quiet", "--json",
                 "--record-trajectory", "--output", model)
    assert result.exit_code == 0, result.output
    assert gpunn.load(model).trajectory.epochs == [0, 1, 2, 3]
    result = run("train", "--resume", model, "--epochs", 4, "--quiet", "--output", model)  # the path goes on
    assert result.exit_code == 0, result.output
    assert gpunn.load(model).trajectory.epochs == [0, 1, 2, 3, 4]
    result = run("plot", model, "--landscape", "--out", tmp_path / "land.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "land.png").read_bytes().startswith(PNG_MAGIC)
    assert json.loads(run("evaluate", model, "--json").stdout)["accuracy"] > 0.5


def test_record_trajectory_needs_output():
    result = run("train", "--record-trajectory", "--epochs", 1)
    assert result.exit_code == 2 and "give --output" in result.output


@needs_matplotlib
def test_landscape_needs_the_data_set(tmp_path):
    net = gpunn.Network([2, 3, 2])
    net.save(tmp_path / "bare.npz")
    assert_one_line_error(run("plot", tmp_path / "bare.npz", "--landscape", "--out", tmp_path / "x.png"),
                          "does not record the data set")
