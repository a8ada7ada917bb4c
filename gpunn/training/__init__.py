"""The training wing: minibatch gradient descent and everything that drives it.

The loop and its History (:mod:`.loop`), the optimizers (:mod:`.optim`), callbacks, the
stuck-run diagnosis, the device step and its CUDA graph, the dense-path autotuner, distributed
data-parallel training and the recorded weight trajectory.  It works on the network objects of
:mod:`gpunn.nn` and imports nothing above it.
"""
