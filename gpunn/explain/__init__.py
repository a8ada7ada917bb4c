"""The explain wing: the learner's view of a network.

One training step with every number (:mod:`.step`) written out in the tutorial's notation
(:mod:`.text`), the loss landscape (:mod:`.landscape`) and the plots (:mod:`.plotting`).
It sits above the public :class:`gpunn.Network` and below the faces.
"""
