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
