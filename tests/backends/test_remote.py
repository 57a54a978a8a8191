"""Specification of measuring on a remote device through TVM's RPC, against servers on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from backends import compile_model
from backends.base import RemoteDevice
from ir.errors import BackendError

pytestmark = pytest.mark.tvm


def tiny_cnn():
    from test_backends import conv_relu_gemm  # noqa: PLC0415

    return conv_relu_gemm()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"RPC process exited: {process.stdout.read()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def start(*args: str) -> subprocess.Popen:
    # A session of its own: the server forks a worker per connection, and stopping must end those too.
    command = [sys.executable, "-m", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:  # it may have exited already (the failure being reported)
        os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=10)


@pytest.fixture
def rpc_server():
    pytest.importorskip("tvm")
    port = free_port()
    server = start("tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1))
    try:
        wait_for(port, server)
        yield RemoteDevice("127.0.0.1", port)
    finally:
        stop(server)


@pytest.fixture
def rpc_tracker_with_device():
    pytest.importorskip("tvm")
    pytest.importorskip("tornado", reason="TVM's RPC tracker needs tornado")
    tracker_port, server_port = free_port(), free_port()
    tracker = start("tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(tracker_port), "--port-end", str(tracker_port + 1))
    processes = [tracker]
    try:
        wait_for(tracker_port, tracker)
        server = start(
            "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(server_port), "--port-end", str(server_port + 1),
            "--tracker", f"127.0.0.1:{tracker_port}", "--key", "loopback-board",
        )  # fmt: skip
        processes.append(server)
        wait_for(server_port, server)
        time.sleep(1.0)  # the server registers with the tracker after it listens
        yield RemoteDevice("127.0.0.1", tracker_port, key="loopback-board")
    finally:
        for process in reversed(processes):
            stop(process)


def test_latency_is_measured_on_the_rpc_server(rpc_server, tmp_path):
    result = compile_model(tiny_cnn(), "llvm", tmp_path, measure_repeat=5, remote=rpc_server)
    assert result.latency is not None
    assert result.latency.where == f"rpc 127.0.0.1:{rpc_server.port}"
    assert result.latency.runs == 5 and 0 < result.latency.min_ms <= result.latency.median_ms


def test_outputs_computed_remotely_match_the_local_library(rpc_server, tmp_path):
    import tvm  # noqa: PLC0415

    from backends.remote import measure_remote  # noqa: PLC0415
    from backends.tvm_build import run_library  # noqa: PLC0415

    result = compile_model(tiny_cnn(), "llvm", tmp_path, check=False)
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    remote = measure_remote(result.library, [x], rpc_server, repeat=2)
    np.testing.assert_array_equal(remote.outputs[0], run_library(tvm, result.library, [x])[0])


def test_a_device_is_requested_from_the_tracker_by_key(rpc_tracker_with_device, tmp_path):
    result = compile_model(tiny_cnn(), "llvm", tmp_path, measure_repeat=3, remote=rpc_tracker_with_device)
    assert result.latency is not None and result.latency.where.startswith("rpc loopback-board@127.0.0.1")


@pytest.mark.slow
def test_tuning_measures_its_candidates_on_the_device_the_tracker_hands_out(rpc_tracker_with_device, tmp_path):
    pytest.importorskip("xgboost")
    result = compile_model(tiny_cnn(), "llvm", tmp_path, tune_trials=4, tune_db=tmp_path / "db", measure_repeat=2, remote=rpc_tracker_with_device)
    assert result.tuning is not None and result.tuning.trials >= 4 and result.tuning.tasks_tuned >= 1
    assert (tmp_path / "db" / "database_tuning_record.json").read_text().strip()
    assert result.latency is not None and result.latency.where.startswith("rpc loopback-board@127.0.0.1")


def test_an_unreachable_device_is_a_one_line_error(tmp_path):
    pytest.importorskip("tvm")
    remote = RemoteDevice("127.0.0.1", free_port(), timeout_seconds=5)
    with pytest.raises(BackendError, match=f"cannot reach the RPC device 127.0.0.1:{remote.port}") as caught:
        compile_model(tiny_cnn(), "llvm", tmp_path, measure_repeat=3, remote=remote)
    assert "\n" not in str(caught.value)
