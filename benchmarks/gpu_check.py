"""The GPU check: every device-parametrised test and each benchmark's quick workload, on the CPU and on CUDA.

Run it on a machine with CUDA as ``make gpu-check`` (which puts the repository
on ``PYTHONPATH`` and installs any wheels carried in ``.whl/``). It prints one
table: what ran, CPU seconds, CUDA seconds, their ratio, and the largest
difference between the two results relative to the largest CPU magnitude.
The tests run twice (``SKLEARN_INTERP_TEST_DEVICES=cpu``, then ``=cuda``);
their row's difference column is empty and its name says how many passed.
Every workload draws its initial weights from a CPU generator, so CPU and
CUDA start from the same model; what differences remain come from float32
rounding in another order, compounded by training. Exits non-zero when a test
fails or a workload raises.

``--device cpu`` runs the same comparison CPU against CPU, to try the script
on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from _common import format_table, quick_row, workload_name

REPOSITORY = Path(__file__).resolve().parent.parent
BENCHMARKS = ["snmf", "mp_sae", "local_id", "diffroar", "sdm", "consistency", "ccm", "sesa", "causal", "steering"]


def run_device_tests(device, pytest_args):
    """The device-parametrised tests on ``device`` alone: seconds, pytest's summary line, return code."""
    environment = {
        **os.environ,
        "SKLEARN_INTERP_TEST_DEVICES": device,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "device and not slow",
               *pytest_args, "tests"]
    start = time.perf_counter()
    process = subprocess.run(command, cwd=REPOSITORY, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    counts = re.findall(r"(\d+) (passed|failed|errors?|skipped)", process.stdout)
    summary = ", ".join(f"{n} {word}" for n, word in counts[-4:]) if counts else f"pytest exited {process.returncode}"
    if process.returncode != 0:
        print(process.stdout[-6000:], process.stderr[-2000:], sep="\n", file=sys.stderr)
    return seconds, summary, process.returncode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--benchmarks", nargs="*", default=BENCHMARKS, choices=BENCHMARKS)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--output", help="also write the table to this file")
    args, pytest_args = parser.parse_known_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: CUDA is not available on this machine (use --device cpu to try the script here).",
              file=sys.stderr)
        return 2
    if args.device.startswith("cuda"):
        print(f"gpu-check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    rows, failed = [], False
    if not args.skip_tests:
        cpu_seconds, cpu_summary, cpu_code = run_device_tests("cpu", pytest_args)
        device_seconds, device_summary, device_code = run_device_tests(args.device, pytest_args)
        failed |= bool(cpu_code or device_code)
        rows.append({"what": f"device-parametrised tests (cpu: {cpu_summary}; {args.device}: {device_summary})",
                     "cpu_s": cpu_seconds, "device_s": device_seconds, "cpu/device": cpu_seconds / device_seconds,
                     "max_rel_diff": math.nan})
        print(format_table(rows[-1:]), flush=True)
    for name in args.benchmarks:
        module = importlib.import_module(f"bench_{name}")
        try:
            rows.append(quick_row(workload_name(module.quick), module.quick, args.device))
        except Exception as error:  # one broken workload must not hide the others' rows
            failed = True
            rows.append({"what": f"{workload_name(module.quick)}: FAILED ({type(error).__name__}: {error})",
                         "cpu_s": math.nan, "device_s": math.nan, "cpu/device": math.nan, "max_rel_diff": math.nan})
        print(format_table(rows[-1:]), flush=True)
    table = format_table(rows)
    print("\n" + table)
    if args.output:
        Path(args.output).write_text(table + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
