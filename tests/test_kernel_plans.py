"""Launch plans (gpunn.compute.kernel_source): what they refuse and how they shape launches; no compiler needed."""

import numpy as np
import pytest

from gpunn.compute import kernel_source as ks


def _gather_arrays(rows=3, n_total=40, cols=10):
    return dict(src=np.zeros((rows, n_total), np.float32), labels_src=np.zeros(n_total, np.int32),
                order=np.arange(n_total, dtype=np.int64), step=np.zeros((), np.int32),
                out=np.zeros((rows, cols), np.float32), labels_out=np.zeros(cols, np.int32))


@pytest.mark.parametrize("batch,first", [(8, 0), (10, 1), (10, -1)])
def test_gather_refuses_columns_beyond_the_batch(batch, first):
    """10 columns at ``first`` must lie within a batch: 0 <= first and first + 10 <= batch.

    (Written ``not 0 <= first and first + cols <= batch``, the check refused nothing
    but a negative first: Python reads it as ``(not 0 <= first) and ...``.)
    """
    with pytest.raises(ValueError, match="do not fit in a batch"):
        ks.plan_gather_batch(**_gather_arrays(), batch=batch, first=first)


def test_gather_accepts_columns_within_the_batch():
    launch = ks.plan_gather_batch(**_gather_arrays(cols=4), batch=10, first=6)
    assert launch.name == "gather_batch_f32"


@pytest.mark.parametrize("cols,blocks,threads", [
    (1, 1, 32), (10, 1, 32), (33, 1, 64), (256, 1, 256), (257, 2, 256), (3000, 12, 256),
    (64 * 256 * 3, ks.REDUCE_BLOCKS, 256),  # more samples than threads: the blocks grid-stride
])
def test_output_delta_launch_shape_depends_on_the_sample_count_alone(cols, blocks, threads):
    assert ks.reduce_launch(cols) == (blocks, threads)
    assert threads & (threads - 1) == 0, "the block's sum tree needs a power of two"


def test_output_delta_needs_its_reduction_scratch():
    a = np.zeros((3, 5), np.float32)
    args = (a, np.zeros(5, np.int32), a.copy(), np.zeros((), np.float64), np.zeros((), np.int64))
    launch = ks.plan_output_delta(*args, ks.ReductionScratch.zeros(np), "quadratic")
    assert launch.grid == 1 and launch.block == 32 and len(launch.args) == 11  # weights: NULL between labels and delta
    assert launch.args[2] is None
    bad = ks.ReductionScratch(np.zeros(3), np.zeros(ks.REDUCE_BLOCKS, np.int64), np.zeros(1, np.uint32))
    with pytest.raises(ValueError, match="block_loss has shape"):
        ks.plan_output_delta(*args, bad, "quadratic")


def test_dense_launches_cover_the_output_with_16x16_tiles():
    wb, a_in, z = np.zeros((785, 30), np.float32), np.zeros((785, 10), np.float32), np.zeros((30, 10), np.float32)
    forward = ks.plan_dense_forward(wb, a_in, z, "identity")
    assert (forward.name, forward.grid, forward.block) == ("dense_forward_identity_f32", (1, 2), (16, 16))
    grad = ks.plan_dense_weight_grad(a_in, np.zeros((30, 10), np.float32), np.zeros((785, 30), np.float32))
    assert grad.grid == (2, 50)


def test_kernel_code_inlines_every_header_with_line_markers():
    code = ks.kernel_code()
    assert '#include "' not in code
    for header in ks.HEADER_FILES:
        assert f'#line 1 "{header}"' in code
    assert code.count(f'"{ks.KERNEL_FILE}"') == len(ks.HEADER_FILES)
