"""``gpunn bench``: race gpunn against its peers on the same networks, in one run.

For each configuration (:data:`gpunn.bench.peers.CONFIGS`) every selected peer
(:mod:`gpunn.bench.peers`) is built on the same synthetic data and the same initial
parameters.  Then the peers take turns: one warm-up round (each peer trains one
epoch, not timed), then ``--epochs`` timed rounds, each peer training one epoch per
round, so that whatever else the machine is doing slows all of them alike.  A short
idle pause precedes each epoch, so that one library's spinning worker threads do not
steal cores from the next.  The report gives each peer's median samples per second,
how many times faster gpunn is than each peer on the same device, gpunn's epoch
time over the GEMM floor's, and the fixed cost of a ``fit`` call (its set-up before
the first step) as a multiple of one ``X.astype(float32)`` copy.

The data is synthetic: ``--samples`` x 784 float32 pixels drawn uniformly from
[0, 1) and labels drawn uniformly from 0..9.  It measures speed only; nothing is
learned from it.

Limits: the numbers are as good as the machine is quiet; the per-round lists in the
JSON show the spread.  ``--threads`` needs threadpoolctl (``pip install "gpunn[bench]"``);
without it each library keeps its own thread count, which is reported.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from contextlib import ExitStack, contextmanager, suppress
from datetime import datetime, timezone

import click
import numpy as np

from gpunn._version import __version__
from gpunn.bench.peers import CONFIGS, PEER_ALIASES, PEERS, GpunnPeer, Problem
from gpunn.network import Network

DEFAULT_SAMPLES = 50_000
DEFAULT_EPOCHS = 3
WARMUP_EPOCHS = 1
#: Idle seconds before each peer's epoch: OpenBLAS and OpenMP worker threads spin for a
#: while after their last call, and would otherwise steal cores from the next peer.
SETTLE_SECONDS = 0.25
FEATURES, CLASSES = 784, 10
#: Samples per timed epoch of the textbook peer (it trains about 100 samples/s on C).
TEXTBOOK_SAMPLES = {"A": 2000, "B": 2000, "C": 256, "D": 64, "E": 0}
QUICK_SAMPLES = 256
QUICK_TEXTBOOK_SAMPLES = {"A": 20, "B": 20, "C": 8, "D": 2, "E": 0}


def synthetic_data(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-sized random data: (samples, 784) float32 uniform on [0, 1), labels uniform on 0..9."""
    rng = np.random.default_rng(seed)
    return rng.random((samples, FEATURES), dtype=np.float32), rng.integers(0, CLASSES, samples)


def data_description(samples: int, seed: int) -> str:
    return (f"synthetic: {samples} samples of {FEATURES} float32 pixels uniform on [0, 1), "
            f"labels uniform on 0..{CLASSES - 1} (seed {seed}); speed only, nothing is learned")


def initial_weights(config, seed: int) -> list[np.ndarray]:
    """The parameters every peer starts from: gpunn's default draw for the configuration, float32
    (``scaled`` for the sigmoid configurations, ``he`` for ReLU)."""
    net = Network(config.sizes, activation=config.activation, output_activation=config.output_activation,
                  loss=config.loss, backend="numpy", dtype="float32", seed=seed)
    return [np.ascontiguousarray(part, dtype=np.float32) for part in net.get_weights()]


# -- options --------------------------------------------------------------------------
def parse_peers(text: str | None) -> list[str]:
    """Peer names from a comma list (aliases expanded), in the order rounds run them."""
    if not text:
        return list(PEERS)
    wanted = set()
    for name in (part.strip().lower() for part in text.split(",")):
        if name in PEERS:
            wanted.add(name)
        elif name in PEER_ALIASES:
            wanted.update(PEER_ALIASES[name])
        elif name:
            known = ", ".join(list(PEERS) + [a for a in PEER_ALIASES if a != "all"])
            raise click.BadParameter(f"unknown peer {name!r}; known: {known}, all", param_hint="--peers")
    return [name for name in PEERS if name in wanted]


def parse_configs(text: str) -> list[str]:
    names = []
    for name in (part.strip().upper() for part in text.split(",")):
        if name not in CONFIGS:
            raise click.BadParameter(f"unknown configuration {name!r}; known: {', '.join(CONFIGS)}",
                                     param_hint="--configs")
        if name not in names:
            names.append(name)
    return names


# -- machine and threads ----------------------------------------------------------------
def _version(module_name: str) -> str | None:
    try:
        module = __import__(module_name)
    except Exception:  # reporting only: a module that fails to import is "not there"
        return None
    return getattr(module, "__version__", "unknown")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numpy_blas() -> dict:
    """NumPy's build-time BLAS/LAPACK and SIMD description (from ``numpy.show_config``)."""
    try:
        config = np.show_config(mode="dicts")
    except Exception:  # older NumPy has no mode="dicts"
        return {}
    deps = config.get("Build Dependencies", {})
    return {"blas": deps.get("blas"), "lapack": deps.get("lapack"), "simd": config.get("SIMD Extensions")}


def _gpus() -> list[str]:
    names = []
    try:
        import cupy

        for device in range(cupy.cuda.runtime.getDeviceCount()):
            name = cupy.cuda.runtime.getDeviceProperties(device)["name"]
            names.append(name.decode() if isinstance(name, bytes) else name)
    except Exception:  # no CuPy or no device: try PyTorch, else there is none
        try:
            import torch

            names = [torch.cuda.get_device_name(d) for d in range(torch.cuda.device_count())]
        except Exception:
            pass
    return names


def machine_info() -> dict:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "versions": {"gpunn": __version__, "numpy": np.__version__, "torch": _version("torch"),
                     "cupy": _version("cupy"), "threadpoolctl": _version("threadpoolctl")},
        "numpy_blas": _numpy_blas(),
        "gpus": _gpus(),
    }


@contextmanager
def thread_limits(threads: int | None, use_torch: bool):
    """Cap the BLAS/OpenMP pools of every loaded library (and PyTorch's) at ``threads``.

    Yields a report of the thread pools in force.  Libraries must be imported before
    entering, so that threadpoolctl sees them: the caller has already checked (and so
    imported) every peer.  ``threads=None`` changes nothing and only reports.
    """
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        if threads is not None:
            raise click.UsageError('--threads needs threadpoolctl: pip install threadpoolctl '
                                   '(or pip install "gpunn[bench]")') from None
        threadpool_info = threadpool_limits = None
    torch = None
    if use_torch:
        import torch
    with ExitStack() as stack:
        if threads is not None:
            stack.enter_context(threadpool_limits(limits=threads))
            if torch is not None:
                previous = torch.get_num_threads()
                torch.set_num_threads(threads)
                stack.callback(torch.set_num_threads, previous)
        pools = [
            {key: pool.get(key) for key in ("user_api", "internal_api", "num_threads", "version", "filepath")}
            for pool in (threadpool_info() if threadpool_info else [])
        ]
        env = {key: os.environ[key] for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
               if key in os.environ}
        yield {"requested": threads, "pools": pools, "torch_intra_op": torch.get_num_threads() if torch else None,
               "environment": env}


def threads_line(report: dict) -> str:
    parts = [f"{pool['internal_api']} {pool['num_threads']} ({os.path.basename(pool['filepath'] or '?')})"
             for pool in report["pools"]]
    if report["torch_intra_op"] is not None:
        parts.append(f"torch intra-op {report['torch_intra_op']}")
    if not report["pools"]:
        parts.append("pools unknown (threadpoolctl not installed)")
    asked = "library defaults" if report["requested"] is None else f"--threads {report['requested']}"
    return f"threads ({asked}): " + ", ".join(parts)


# -- the race ---------------------------------------------------------------------------
def _summarise(record: dict, batch_size: int) -> None:
    rates = [s / t for s, t in zip(record["samples"], record["seconds"])]
    record["samples_per_second"] = rates
    record["median_samples_per_second"] = statistics.median(rates)
    record["median_epoch_seconds"] = statistics.median(record["seconds"])
    # an epoch of n samples is ceil(n / batch) steps (the last one may be short)
    record["median_step_us"] = statistics.median(
        t / -(-s // batch_size) * 1e6 for s, t in zip(record["samples"], record["seconds"]))


def race(problem: Problem, names: list[str], epochs: int, settle: float, log) -> dict:
    """Build the peers ``names`` for ``problem`` and time them in alternating rounds.

    Each peer's epoch starts ``settle`` seconds after the previous peer's ended.

    Returns ``{name: record}``; a record has ``status`` ``"ok"`` with the per-round
    ``samples``, ``seconds`` and ``samples_per_second`` lists, their medians, the median
    time of a step (``median_step_us``) and the peer's :meth:`~gpunn.bench.peers.Peer.details`
    (gpunn's peers also ``fit_fixed_cost``, see :meth:`~gpunn.bench.peers.GpunnPeer.fit_fixed_cost`),
    or ``"failed"`` with the ``reason`` (a peer that fails is dropped; the others go on).
    """
    records, running = {}, {}
    for name in names:
        try:
            running[name] = PEERS[name](problem)
            records[name] = {"status": "ok", "device": PEERS[name].device, "summary": PEERS[name].summary,
                             "samples": [], "seconds": []}
        except Exception as exc:  # one peer's failure is reported, not fatal
            records[name] = {"status": "failed", "reason": f"set-up: {exc.__class__.__name__}: {exc}"}
    try:
        for round_ in range(WARMUP_EPOCHS + epochs):
            timed = round_ >= WARMUP_EPOCHS
            label = f"round {round_ - WARMUP_EPOCHS + 1}/{epochs}" if timed else "warm-up"
            for name, peer in list(running.items()):
                time.sleep(settle)
                try:
                    samples, seconds = peer.epoch()
                except Exception as exc:  # e.g. out of device memory: drop this peer only
                    records[name] = {"status": "failed", "reason": f"{label}: {exc.__class__.__name__}: {exc}"}
                    _close(running.pop(name))
                    continue
                log(f"  {problem.config.name} {label:<11} {name:<18} {seconds:9.3f} s  "
                    f"{samples / seconds:12,.0f} samples/s")
                if timed:
                    records[name]["samples"].append(samples)
                    records[name]["seconds"].append(seconds)
                    records[name].update(peer.details())
        for name, peer in running.items():
            if isinstance(peer, GpunnPeer):
                time.sleep(settle)
                records[name]["fit_fixed_cost"] = peer.fit_fixed_cost()
    finally:
        for peer in running.values():
            _close(peer)
    for record in records.values():
        if record["status"] == "ok":
            _summarise(record, problem.config.batch_size)
    return records


def _close(peer) -> None:
    with suppress(Exception):  # freeing memory is best effort; the results stand either way
        peer.close()


def add_ratios(config_result: dict) -> None:
    """Per peer, how many times faster gpunn is on the same device; per device, gpunn over the floor."""
    peers = config_result["peers"]

    def rate(name):
        record = peers.get(name, {})
        return record.get("median_samples_per_second") if record.get("status") == "ok" else None

    floors = {}
    for name, record in peers.items():
        if record["status"] != "ok":
            continue
        gpunn = "gpunn-numpy" if record["device"] == "cpu" else "gpunn-cupy"
        record["compared_with"] = gpunn
        record["gpunn_speedup"] = rate(gpunn) / rate(name) if rate(gpunn) else None
        if name.startswith("gemm-floor") and rate(gpunn):
            # both train every sample of the epoch, so this is also the ratio of epoch times
            floors[record["device"]] = rate(name) / rate(gpunn)
    config_result["gpunn_time_over_floor"] = floors


def run_benchmark(config_names, samples, epochs, peer_names, threads, seed, quick, configs_asked, log) -> dict:
    """Run every configuration and return the full result (what ``--json-out`` writes)."""
    absent = {name: PEERS[name].unavailable() for name in peer_names}
    available = [name for name in peer_names if absent[name] is None]
    has_gpu = any(PEERS[name].device == "cuda" for name in available)
    if not configs_asked and has_gpu and "D" not in config_names:
        config_names = config_names + ["D"]
    textbook = QUICK_TEXTBOOK_SAMPLES if quick else TEXTBOOK_SAMPLES
    settle = 0.0 if quick else SETTLE_SECONDS
    uses_torch = any(name.startswith("torch") for name in available)

    result = {"machine": machine_info(),
              "data": {"description": data_description(samples, seed), "samples": samples,
                       "features": FEATURES, "classes": CLASSES, "dtype": "float32", "seed": seed},
              "settings": {"epochs": epochs, "warmup_epochs": WARMUP_EPOCHS, "alternating": True,
                           "settle_seconds": settle,
                           "quick": quick, "peers": peer_names},
              "configs": {}}
    X, labels = synthetic_data(samples, seed)
    with thread_limits(threads, uses_torch) as thread_report:
        result["threads"] = thread_report
        log(threads_line(thread_report))
        for name in config_names:
            config = CONFIGS[name]
            cap = min(textbook[name], samples)
            problem = Problem(config, X, labels, initial_weights(config, seed), seed, cap)
            # a GPU-sized configuration nobody asked for runs on the GPU peers only
            skip_cpu = config.gpu_sized and not configs_asked
            to_run = [p for p in available if not (skip_cpu and PEERS[p].device == "cpu")
                      and PEERS[p].unsupported(config) is None]
            log(f"config {name}: {config.describe()}")
            records = race(problem, to_run, epochs, settle, log)
            for peer in peer_names:
                if absent[peer] is not None:
                    records[peer] = {"status": "absent", "reason": absent[peer]}
                elif PEERS[peer].unsupported(config) is not None:
                    records[peer] = {"status": "skipped", "reason": PEERS[peer].unsupported(config)}
                elif peer not in records:
                    records[peer] = {"status": "skipped",
                                     "reason": f"CPU peer on the GPU-sized config {name}; ask with --configs {name}"}
            config_result = {"sizes": list(config.sizes), "batch_size": config.batch_size, "lr": config.lr,
                             "activation": config.activation, "output_activation": config.output_activation,
                             "loss": config.loss, "optimizer": config.optimizer, "textbook_samples_per_epoch": cap,
                             "peers": {peer: records[peer] for peer in peer_names}}
            add_ratios(config_result)
            result["configs"][name] = config_result
    result["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return result


# -- the report -------------------------------------------------------------------------
def format_report(result: dict) -> str:
    machine, settings = result["machine"], result["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    blas = (machine["numpy_blas"].get("blas") or {}).get("name", "?")
    lines = [
        f"gpunn bench, {machine['date']}: {machine['cpu']}, {machine['cpus_usable']} of {machine['cpu_count']} CPUs "
        f"usable, load {_load(machine['load_average_start'])} -> {_load(machine.get('load_average_end'))}"
        + (f", GPU {', '.join(machine['gpus'])}" if machine["gpus"] else ", no GPU"),
        f"{versions}; NumPy BLAS {blas}",
        threads_line(result["threads"]),
        f"data: {result['data']['description']}",
        f"timing: median of {settings['epochs']} epochs per peer after {settings['warmup_epochs']} warm-up epoch, "
        f"peers alternating epoch by epoch ({settings['settle_seconds']:g} s idle before each); "
        f"'gpunn x' = gpunn's samples/s over the peer's on the same device",
    ]
    header = f"{'peer':<18}{'device':<7}{'samples/epoch':>14}{'epoch s':>10}{'samples/s':>13}{'gpunn x':>9}  note"
    for name, config in result["configs"].items():
        lines += ["", f"config {name}: {CONFIGS[name].describe()}", header]
        for peer, record in config["peers"].items():
            if record["status"] != "ok":
                lines.append(f"{peer:<18}{record['status']}: {record['reason']}")
                continue
            speedup = record.get("gpunn_speedup")
            note = ""
            if peer == "textbook":
                note = f"capped at {config['textbook_samples_per_epoch']} samples per timed epoch"
            elif peer.startswith("gemm-floor"):
                over = config["gpunn_time_over_floor"].get(record["device"])
                note = "GEMMs only" + (f"; gpunn epoch time / floor = {over:.2f}" if over else "")
            elif record.get("dense"):
                note = (f"{record['dense']} products ({record['dense_source']}), {record['step']}, "
                        f"{record['median_step_us']:,.1f} us/step")
            lines.append(
                f"{peer:<18}{record['device']:<7}{statistics.median(record['samples']):>14,.0f}"
                f"{record['median_epoch_seconds']:>10.3f}{record['median_samples_per_second']:>13,.0f}"
                f"{(f'{speedup:.2f}' if speedup else '-'):>9}  {note}".rstrip()
            )
        lines += summary_lines(config)
    return "\n".join(lines)


def summary_lines(config: dict) -> list[str]:
    """Per gpunn peer: its epoch over the floor's and how many times faster it is than each peer
    on its device; then what one ``fit`` call costs before its first step."""
    lines, peers = [], config["peers"]
    for name, record in peers.items():
        if not (name.startswith("gpunn") and record["status"] == "ok"):
            continue
        device = record["device"]
        parts = []
        over = config["gpunn_time_over_floor"].get(device)
        if over and name in ("gpunn-numpy", "gpunn-cupy"):
            parts.append(f"epoch {over:.2f}x the GEMM floor")
        for peer in ("torch-cpu", "numpy-obvious") if device == "cpu" else ("torch-cuda",):
            other = peers.get(peer, {})
            if other.get("status") == "ok" and other.get("compared_with") == name and other.get("gpunn_speedup"):
                parts.append(f"{other['gpunn_speedup']:.2f}x {peer}")
        cost = record.get("fit_fixed_cost")
        if cost:
            parts.append(f"fit() set-up {cost['fit_epochs0_seconds'] * 1e3:,.1f} ms = {cost['ratio']:.1f}x one "
                         f"X.astype(float32) copy ({cost['astype_copy_seconds'] * 1e3:,.2f} ms)")
        if parts:
            lines.append(f"  {name}: " + "; ".join(parts))
    return lines


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "?"


@click.command(short_help="Race gpunn against PyTorch, plain NumPy and the textbook loop.")
@click.option("--configs", default=None,
              help="Comma list of A (784-30-10, batch 10), B (784-100-10, batch 10), C (784-1024-1024-10, "
                   "batch 128), D (784-4096-4096-10, batch 1024): the tutorial's sigmoid network and SGD; "
                   "E (784-256-10, relu, softmax + cross-entropy, adam, batch 64) [default: A,B,C,E, plus D "
                   "on the GPU peers when one can run].")
@click.option("--samples", type=click.IntRange(1), default=None,
              help=f"Samples per epoch [default: {DEFAULT_SAMPLES}; {QUICK_SAMPLES} with --quick].")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help=f"Timed epochs per peer, after {WARMUP_EPOCHS} warm-up epoch [default: {DEFAULT_EPOCHS}; "
                   "1 with --quick].")
@click.option("--peers", default=None,
              help=f"Comma list of {', '.join(PEERS)}; or gpunn, torch, gemm-floor for both devices, "
                   "gpunn-dense for the three dense paths on the GPU [default: all].")
@click.option("--output", "--json-out", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the full results here, as JSON (--json-out is the same option).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="BLAS/OpenMP threads for every peer, through threadpoolctl [default: each library's own].")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seeds the data, the initial parameters and each peer's shuffling.")
@click.option("--quick", is_flag=True,
              help=f"Smoke run: {QUICK_SAMPLES} samples, 1 timed epoch, a few textbook samples.")
def bench(configs, samples, epochs, peers, json_out, threads, seed, quick):
    """Race gpunn against PyTorch, plain NumPy, the textbook loop and the GEMM floor.

    Progress goes to stderr, the table to stdout.
    """
    peer_names = parse_peers(peers)
    config_names = parse_configs(configs) if configs else ["A", "B", "C", "E"]
    samples = samples or (QUICK_SAMPLES if quick else DEFAULT_SAMPLES)
    epochs = epochs or (1 if quick else DEFAULT_EPOCHS)

    def log(message):
        click.echo(message, err=True)

    result = run_benchmark(config_names, samples, epochs, peer_names, threads, seed, quick,
                           configs_asked=configs is not None, log=log)
    click.echo(format_report(result))
    if json_out:
        with open(json_out, "w") as f:
            json.dump(result, f, indent=2)
        click.echo(f"results written to {json_out}", err=True)
