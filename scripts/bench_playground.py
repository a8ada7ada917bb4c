"""How fast the playground trains while it streams pictures: epochs per second and frames per second.

Starts the playground server (``gpunn playground``, in its own process, as a browser would find it),
connects one tab over a real WebSocket,
sets up spiral data of 500 points, a 2-8-8-2 tanh network and batches of 10 (the NumPy backend on
the CPU), presses play, and counts for ``--seconds`` what arrives: frames, each carrying every
neuron's 50x50 picture, and the epoch each frame reports.  The target is at least 200 epochs/s
with at least 20 frames/s.

    python scripts/bench_playground.py [--seconds 10] [--tabs 1]

``--tabs N`` runs N tabs at once (each its own session and thread) and reports each.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

from websockets.sync.client import connect

TARGET_EPOCHS, TARGET_FRAMES = 200, 20
SETTINGS = {"dataset": "spiral", "points": 500, "train_fraction": 0.5, "hidden": [8, 8], "activation": "tanh",
            "lr": 0.03, "batch": 10}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tab(url: str, seconds: float, settings: dict, out: dict) -> None:
    with connect(url, max_size=None) as ws:
        json.loads(ws.recv())  # hello
        ws.send(json.dumps({"type": "configure", "settings": settings}))
        while True:  # the data message
            message = ws.recv()
            if isinstance(message, str) and json.loads(message)["type"] == "data":
                break
        ws.send(json.dumps({"type": "play"}))
        frames, first, last, size, start = 0, None, None, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            message = ws.recv()
            if isinstance(message, bytes):
                length = int.from_bytes(message[:4], "little")
                header = json.loads(message[4:4 + length])
                first = header["epoch"] if first is None else first
                last, frames, size = header["epoch"], frames + 1, len(message)
                pictures = (len(message) - 4 - length) // 4 // (header["grid"] ** 2)
        elapsed = time.perf_counter() - start
        ws.send(json.dumps({"type": "pause"}))
    out.update(epochs_per_s=(last - first) / elapsed, frames_per_s=frames / elapsed, frame_bytes=size,
               pictures_per_frame=pictures, epochs=last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tabs", type=int, default=1)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from gpunn.cli.main import main; main()", "playground",
                               "--no-open", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=os.environ)
    server.stdout.readline()  # its URL line: it is about to serve
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    results = [{} for _ in range(args.tabs)]
    tabs = [threading.Thread(target=tab, args=(f"ws://127.0.0.1:{port}/api/ws", args.seconds, SETTINGS, r))
            for r in results]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join()
    server.terminate()  # SIGTERM: uvicorn shuts down cleanly
    server.wait(10)
    print(f"spiral, 500 points ({SETTINGS['train_fraction']:.0%} for training), 2-8-8-2 tanh, batch 10, NumPy on "
          f"the CPU, {args.seconds:g} s, {args.tabs} tab(s):")
    for k, r in enumerate(results):
        met = r["epochs_per_s"] >= TARGET_EPOCHS and r["frames_per_s"] >= TARGET_FRAMES
        print(f"  tab {k}: {r['epochs_per_s']:,.0f} epochs/s, {r['frames_per_s']:.1f} frames/s of "
              f"{r['pictures_per_frame']} pictures of 50x50 ({r['frame_bytes']:,} bytes each), "
              f"{r['epochs']:,} epochs in all; target (>= {TARGET_EPOCHS} epochs/s with >= {TARGET_FRAMES} "
              f"frames/s) {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
