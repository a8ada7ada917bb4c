"""The ranges gpunn accepts for training options and layer sizes, kept in one place.

The command line's option types, the model-file reader (for what a saved run may hold
when it is resumed) and the data readers (for labels) all take their bounds from
here, so a value one of them accepts is never refused by another.

The bounds are about sanity, not taste: a learning rate above :data:`MAX_LR` or a weight
decay above :data:`MAX_WEIGHT_DECAY` is orders of magnitude past any useful value (the
tutorial's eta is 3) and only invites overflow; a layer wider than :data:`MAX_UNITS`
cannot be indexed by the CUDA kernels' 32-bit integers; and a sigmoid network deeper
than :data:`MAX_LAYERS` no longer learns (its gradients vanish long before).  Values the
bounds cannot catch alone, a weight decay that must diverge with the learning rate it is
paired with, are refused by :func:`decay_problem`.
"""

from __future__ import annotations

import math

#: Widest layer: the kernels index units with 32-bit integers.
MAX_UNITS = 2**31 - 1
#: Most layers (input and output included) the command line builds.
MAX_LAYERS = 100
MAX_LR = 1e6
MAX_WEIGHT_DECAY = 1e3
MAX_BATCH_SIZE = 1 << 24
MAX_EPOCHS = 100_000
MAX_SEED = 2**32 - 1


def decay_problem(lr: float, momentum: float, weight_decay: float) -> str | None:
    """Why SGD with these settings must blow up, or None when it need not.

    With weight decay the update shrinks each weight by ``(1 - lr * weight_decay)`` per
    step (heavy-ball momentum ``mu`` widens the stable range to ``lr * weight_decay <
    2 (1 + mu)``).  Past that bound every weight grows geometrically whatever the
    gradients do, so the run can only overflow: refuse it up front.
    """
    bound = 2 * (1 + momentum)
    product = lr * weight_decay
    if math.isfinite(product) and product < bound:
        return None
    return (f"--lr {lr:g} times --weight-decay {weight_decay:g} is {product:g}, and from {bound:g} "
            f"(2 x (1 + momentum)) on every weight grows without bound; lower one of them")
