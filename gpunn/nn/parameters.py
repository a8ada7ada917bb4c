"""The network's parameters: one flat buffer, per-layer ``[W; b]`` views, and how they are drawn.

Parameters live in ONE flat buffer (:class:`ParameterLayout`): for each layer the weights ``W``
(inputs x outputs, row-major) followed by the biases ``b``, so that the block is the matrix
``[W; b]`` with the bias as its last row.  The gradients live in a second flat buffer with the
same layout.  An optimizer update is then one fused operation over the whole buffer, and a
data-parallel all-reduce is one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INITS = ("normal", "scaled", "xavier", "he", "glorot_uniform")
#: The initialisation each hidden activation gets when none is given (see :class:`gpunn.nn.mlp.MLP`).
DEFAULT_INIT = {"sigmoid": "scaled", "tanh": "xavier", "relu": "he", "identity": "xavier"}
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class ParameterLayout:
    """Where each layer's ``[W; b]`` block sits in the flat parameter buffer."""

    sizes: tuple[int, ...]

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def block_shape(self, layer: int) -> tuple[int, int]:
        return (self.sizes[layer] + 1, self.sizes[layer + 1])

    def offsets(self) -> list[int]:
        offsets, total = [], 0
        for layer in range(self.n_layers):
            offsets.append(total)
            rows, cols = self.block_shape(layer)
            total += rows * cols
        return offsets + [total]

    @property
    def size(self) -> int:
        return self.offsets()[-1]

    def blocks(self, flat):
        """Per-layer ``[W; b]`` views of a flat buffer (no copies)."""
        offsets = self.offsets()
        return [
            flat[offsets[layer] : offsets[layer + 1]].reshape(self.block_shape(layer))
            for layer in range(self.n_layers)
        ]


def check_sizes(sizes) -> tuple[int, ...]:
    """``sizes`` as a tuple of ints: at least two layers of at least one unit each (ValueError otherwise)."""
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2:
        raise ValueError(f"a network needs at least an input and an output layer, got sizes {list(sizes)}")
    if min(sizes) < 1:
        raise ValueError(f"every layer needs at least one unit, got sizes {list(sizes)}")
    return sizes


def initial_parameters(layout: ParameterLayout, init: str, seed: int, activation: str = "relu") -> np.ndarray:
    """The flat float64 buffer of starting parameters drawn by ``init`` from ``seed``.

    Weights: N(0, std^2) with std by ``init`` (``normal`` 1, ``scaled`` 1/sqrt(n_in), ``xavier``
    sqrt(2/(n_in + n_out)), ``he`` sqrt(2/n_in)); biases N(0, 1) for ``normal`` and ``scaled``,
    0 for the others.  ``glorot_uniform`` is scikit-learn's MLP initialisation: weights and
    biases U(-r, r), r = sqrt(f / (n_in + n_out)), f = 2 for sigmoid (``activation``) units, else 6.
    """
    rng = np.random.default_rng(seed)
    flat = np.empty(layout.size)
    sizes = layout.sizes
    for layer, block in enumerate(layout.blocks(flat)):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        if init == "glorot_uniform":
            bound = np.sqrt((2.0 if activation == "sigmoid" else 6.0) / (n_in + n_out))
            block[...] = rng.uniform(-bound, bound, block.shape)
            continue
        std = {"normal": 1.0, "scaled": 1 / np.sqrt(n_in), "xavier": np.sqrt(2 / (n_in + n_out)),
               "he": np.sqrt(2 / n_in)}[init]
        block[:-1] = rng.standard_normal(block[:-1].shape) * std
        block[-1] = rng.standard_normal(n_out) if init in ("normal", "scaled") else 0.0
    return flat
