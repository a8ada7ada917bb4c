"""Model files written by an earlier gpunn (format 2, commit e1c0475) still load and predict the same.

The fixtures in tests/data were written once by that code (a tutorial-style sigmoid net trained on
digits with SGD, and a relu/softmax net with Adam and standard scaling) together with their
predict_proba outputs on eight digits test samples.  Loading them with today's code on NumPy must give
the same probabilities within float32 rounding (the BLAS may sum in another order) and the same
training state (epochs done, optimizer, scaler).
"""

from pathlib import Path

import numpy as np
import pytest

import gpunn
from gpunn.network import load_with_metadata

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["tutorial", "modern"])
def test_format2_model_predicts_as_when_written(name):
    expected = np.load(DATA / "format2_expected.npz")
    net = gpunn.load(DATA / f"format2_{name}.npz", backend="numpy")
    got = net.predict_proba(expected["X"])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected[name], rtol=1e-5, atol=1e-6)
    assert net.epochs_done == 3
    assert len(net.history.history["loss"]) == 3


def test_format2_models_keep_their_settings():
    tutorial = gpunn.load(DATA / "format2_tutorial.npz", backend="numpy")
    assert (tutorial.sizes, tutorial.activation, tutorial.output_activation) == ((64, 30, 10), "sigmoid", "sigmoid")
    modern, metadata = load_with_metadata(DATA / "format2_modern.npz", backend="numpy")
    assert (modern.activation, modern.output_activation, modern.loss) == ("relu", "softmax", "cross_entropy")
    assert modern.scaler is not None and not modern.scaler.identity
    assert metadata["format_version"] == 2
    assert modern.optimizer is not None


def test_the_model_file_restores_its_parts_into_any_network_object():
    """saving.model_file deals in parts: restored into the bare MLP (no Network), it predicts the same."""
    from gpunn.nn.mlp import MLP
    from gpunn.saving import model_file

    expected = np.load(DATA / "format2_expected.npz")
    parts = model_file.read(DATA / "format2_modern.npz")
    assert parts.architecture()["sizes"] == [64, 32, 10]
    mlp = MLP(**parts.architecture(), backend="numpy")
    model_file.restore(mlp, parts)
    np.testing.assert_allclose(mlp.predict_proba(expected["X"]), expected["modern"], rtol=1e-5, atol=1e-6)
    assert mlp.optimizer.name == "adam" and mlp.epochs_done == 3
