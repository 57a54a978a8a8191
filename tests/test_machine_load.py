"""tools/machine_load.py: what the benchmarks write about the machine's load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import machine_load  # noqa: E402


def test_a_busy_other_process_shows_in_the_share():
    # The spinner is started through a shell that exits at once, so it is not a child of this process
    # (children count as the benchmark's own work, not as other processes').
    spin = f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"
    pid = int(subprocess.run(["sh", "-c", spin], capture_output=True, text=True, check=True).stdout)
    try:
        time.sleep(0.3)
        snapshot = machine_load.snapshot(interval=0.5)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert len(snapshot["load_average"]) == 3 and snapshot["cores"] >= 1
    # one spinning process is one core's worth of other work (minus scheduling on a shared machine)
    assert snapshot["others_cpu_share"] >= 0.5 / snapshot["cores"]


def test_the_description_names_both_ends_or_says_the_run_did_not_finish():
    start = {"time": "t0", "load_average": [1.5, 2.0, 2.5], "others_cpu_share": 0.25, "cores": 2}
    end = {"time": "t1", "load_average": [3.0, 2.0, 1.0], "others_cpu_share": 0.5, "cores": 2}
    text = machine_load.describe(start, end)
    assert "load average 1.5 (5 min: 2)" in text and "25% of 2 cores (t0)" in text
    assert "at the end load average 3 (5 min: 2), other processes 50% of 2 cores (t1)" in text
    assert machine_load.describe(start).endswith("the run had not finished.")
