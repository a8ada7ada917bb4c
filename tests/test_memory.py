"""Peak memory while training stays within 1.1x of what training needs to hold.

Needed: the training data on the device (features x samples, plus labels), the
parameters and gradients, and one batch's activations and errors.  Measured: peak
of NumPy's traced allocations during ``fit`` (the caller's own X is made before).
"""

import tracemalloc

import numpy as np

import gpunn


def test_peak_memory_is_within_ten_percent_of_the_minimum():
    n, sizes, batch = 4000, [784, 30, 10], 10
    rng = np.random.default_rng(0)
    X = rng.random((n, sizes[0]), dtype=np.float32)
    y = rng.integers(0, 10, n)
    net = gpunn.Network(sizes, backend="numpy")
    itemsize = 4
    data = n * sizes[0] * itemsize + n * 4
    parameters = net.params.nbytes + net.grads.nbytes
    activations = sum((units + 1) * batch * itemsize + units * batch * itemsize for units in sizes)
    needed = data + parameters + activations

    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    net.fit(X, y, epochs=2, batch_size=batch, lr=3.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (peak - base) <= 1.1 * needed, f"peak {peak - base} bytes vs needed {needed}"
