"""The machine's load around a benchmark: load average and the CPU share of other processes.

Benchmarks on a shared machine are noisy; each one records ``snapshot()`` when it starts and when it
writes its results, and prints ``describe(start, end)`` into its document, so a reader sees how busy
the machine was without anyone editing the document by hand.

``others_cpu_share`` is the CPU time that processes other than this one and its children used over
``interval`` seconds, as a fraction of all cores (1.0: every core busy with other work).
"""

from __future__ import annotations

import os
import time

import psutil


def snapshot(interval: float = 1.0) -> dict:
    """Load averages (1, 5, 15 min) and other processes' CPU share, measured over ``interval`` s."""
    me = psutil.Process()
    mine = {me.pid, *(child.pid for child in me.children(recursive=True))}
    processes = [p for p in psutil.process_iter() if p.pid not in mine]
    for process in processes:
        try:
            process.cpu_percent(None)  # the first call starts the window
        except psutil.Error:
            pass
    time.sleep(interval)
    busy = 0.0
    for process in processes:
        try:
            busy += process.cpu_percent(None)
        except psutil.Error:
            pass  # ended during the window
    cores = psutil.cpu_count() or os.cpu_count() or 1
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load_average": [round(x, 2) for x in os.getloadavg()],
            "others_cpu_share": round(busy / (100.0 * cores), 3), "cores": cores}


def describe(start: dict, end: dict | None = None) -> str:
    """One Markdown sentence: the load at the start and at the end of the run."""
    def one(s: dict) -> str:
        one_min, five, _ = s["load_average"]
        return f"load average {one_min:g} (5 min: {five:g}), other processes {100 * s['others_cpu_share']:.0f}% of {s['cores']} cores ({s['time']})"

    text = f"Machine load (recorded by the script): at the start {one(start)}"
    return text + (f"; at the end {one(end)}." if end else "; the run had not finished.")
