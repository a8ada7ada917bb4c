"""One rank of a data-parallel test job, run by tests/test_distributed.py under mpiexec.

Usage: ``mpiexec -n K python tests/dist_worker.py OUT_DIR RUNS_JSON``

``RUNS_JSON`` is a list of runs, each a dict: ``name`` (files are ``OUT_DIR/name.npy``
with the final flat parameters and ``OUT_DIR/name.json`` with the loss history,
written by rank 0 only), ``dtype``, ``batch_size``, ``epochs``, and optionally
``momentum``, ``load`` (a model file to resume from, via gpunn.network) and ``save`` (a
model file rank 0 writes at the end, via gpunn.saving.model_file).  Every run trains the embedded
digits on a 64-30-10 network with seed 1 on NumPy, exactly as the test's
single-process reference does.

Fault injection for the failure tests, only here: ``GPUNN_TEST_FAULT=raise:R`` makes
rank R raise after its first epoch, ``kill:R`` makes it SIGKILL itself there.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

from gpunn import Callback, Network, load_dataset
from gpunn.training.distributed import abort_on_error, init_distributed

SIZES = [64, 30, 10]
SEED = 1


class Fault(Callback):
    """Raise or die on one rank at the end of the first epoch, as ``GPUNN_TEST_FAULT`` says."""

    def __init__(self, rank: int):
        action, _, target = os.environ.get("GPUNN_TEST_FAULT", "").partition(":")
        self.action = action if target and int(target) == rank else None

    def on_epoch_end(self, epoch, logs=None):
        if self.action == "raise":
            raise RuntimeError("injected failure after the first epoch")
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)


def train(run: dict, communicator, backend: str, data):
    """Train one run on this rank; returns the network."""
    if run.get("load"):
        from gpunn.network import load

        net = load(run["load"], backend=backend)
    else:
        net = Network(SIZES, init="scaled", backend=backend, dtype=run["dtype"], seed=SEED)
    net.fit(data.X_train, data.y_train, epochs=run["epochs"] - net.epochs_done, batch_size=run["batch_size"],
            lr=3.0, momentum=run.get("momentum", 0.0), callbacks=[Fault(communicator.rank)],
            communicator=communicator)
    return net


def main(out_dir: str, runs_json: str) -> None:
    out = Path(out_dir)
    communicator, backend = init_distributed("numpy")
    with abort_on_error(communicator):
        data = load_dataset("digits")
        for run in json.loads(runs_json):
            net = train(run, communicator, backend, data)
            if communicator.rank == 0:
                np.save(out / f"{run['name']}.npy", np.asarray(net.params))
                (out / f"{run['name']}.json").write_text(json.dumps(net.history.history["loss"]))
                if run.get("save"):
                    from gpunn.saving.model_file import save

                    save(net, run["save"])
            communicator.bcast(None)  # a later run may load what rank 0 just saved


if __name__ == "__main__":
    main(*sys.argv[1:])
