"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import threading
import time


class PeakMemory:
    """Peak resident set size above the level at entry, sampled every 5 ms."""

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.mib = (self.peak - self.start) / 2**20


def timed(function):
    """Run ``function()``; return its value, the seconds it took and its peak MiB."""
    with PeakMemory() as memory:
        start = time.perf_counter()
        value = function()
        seconds = time.perf_counter() - start
    return value, seconds, memory.mib


# -- quick mode: one small seeded workload on the CPU and on another device ------------------------------------


def add_quick_arguments(parser):
    """``--quick`` and ``--device``: the GPU check's row for this benchmark instead of the full run."""
    parser.add_argument(
        "--quick", action="store_true",
        help="run this benchmark's small seeded workload on the CPU and on --device; print one table row",
    )
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU in --quick mode")


def _synchronize(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def quick_row(what, workload, device):
    """Time ``workload(device)`` against ``workload("cpu")`` and compare what they return.

    ``workload`` returns a float array (the method's output on fixed data from
    a fixed seed). Each device runs it twice and the second run is timed, so
    CUDA start-up, kernel compilation and first imports are not counted.
    Returns a dict: what, CPU seconds, device seconds, their ratio, and the
    largest difference relative to the largest CPU magnitude.
    """
    import numpy as np

    workload("cpu")  # warm-up: imports, thread pools
    start = time.perf_counter()
    on_cpu = np.asarray(workload("cpu"), dtype=np.float64)
    cpu_seconds = time.perf_counter() - start
    workload(device)  # warm-up: context, allocator, kernels
    _synchronize(device)
    start = time.perf_counter()
    on_device = np.asarray(workload(device), dtype=np.float64)
    _synchronize(device)
    device_seconds = time.perf_counter() - start
    scale = max(float(np.nanmax(np.abs(on_cpu))), 1e-300)
    same_nan = bool(np.array_equal(np.isnan(on_cpu), np.isnan(on_device)))
    difference = float(np.nanmax(np.abs(on_device - on_cpu))) / scale if same_nan else float("inf")
    return {
        "what": what,
        "cpu_s": cpu_seconds,
        "device_s": device_seconds,
        "cpu/device": cpu_seconds / device_seconds,
        "max_rel_diff": difference,
    }


def workload_name(workload):
    """What a benchmark's ``quick`` workload runs: its docstring's first line, after the colon."""
    return workload.__doc__.strip().splitlines()[0].split(": ", 1)[-1].rstrip(".")


def format_table(rows):
    """Rows of :func:`quick_row` as the text table the GPU check prints."""
    import pandas as pd

    return pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}")


def run_quick(workload, args):
    """The ``--quick`` entry point of a benchmark script: print its one-row table."""
    print(format_table([quick_row(workload_name(workload), workload, args.device)]))
