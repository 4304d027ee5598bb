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
