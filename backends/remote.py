"""Measuring a built library on a device reached through TVM's RPC, the way TVM users already work.

On the board: ``python -m tvm.exec.rpc_server --host 0.0.0.0 --port 9090`` (optionally
``--tracker HOST:9190 --key rpi4`` to register with a tracker started by
``python -m tvm.exec.rpc_tracker --port 9190``).

Rules:
- ``RemoteDevice(host, port)`` connects to a server; with ``key`` it asks the tracker at host:port
  for a device registered under that key.
- ``measure_remote`` uploads the library, loads it there, runs ``main`` once to return the outputs
  (compared by the caller) and then times it with TVM's ``time_evaluator`` on the remote device.
- The device is the remote CPU for ``llvm`` libraries and its GPU 0 for ``cuda`` ones.
- Connection failures are one-line ``BackendError`` messages naming the address.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import Latency, RemoteDevice
from ir.errors import BackendError


@dataclasses.dataclass(frozen=True)
class RemoteRun:
    outputs: list[np.ndarray]
    latency: Latency


def connect(remote: RemoteDevice) -> Any:
    from tvm import rpc  # noqa: PLC0415 - needs tvm

    try:
        if remote.key:
            return rpc.connect_tracker(remote.host, remote.port).request(remote.key, session_timeout=remote.timeout_seconds)
        return rpc.connect(remote.host, remote.port, session_timeout=remote.timeout_seconds)
    except Exception as exc:  # TVMError, ConnectionRefusedError, RuntimeError
        raise BackendError(f"cannot reach the RPC device {remote.text}: {_first_line(exc)}") from exc


def measure_remote(
    library: Path, inputs: Sequence[np.ndarray], remote: RemoteDevice, *, repeat: int = 10, gpu: bool = False
) -> RemoteRun:
    import tvm  # noqa: PLC0415

    session = connect(remote)
    try:
        session.upload(str(library))
        module = session.load_module(library.name)
        device = session.cuda(0) if gpu else session.cpu(0)
        machine = tvm.relax.VirtualMachine(module, device)
        tensors = [tvm.runtime.tensor(np.ascontiguousarray(a), device) for a in inputs]
        result = machine["main"](*tensors)
        outputs = [result.numpy()] if hasattr(result, "numpy") else [item.numpy() for item in result]
        machine.set_input("main", *tensors)
        timer = machine.time_evaluator("invoke_stateful", device, number=1, repeat=max(repeat, 1), min_repeat_ms=0)
        seconds = list(timer("main").results)
    except BackendError:
        raise
    except Exception as exc:  # RPC errors arrive as TVMError with the remote traceback
        raise BackendError(f"running {library.name} on {remote.text} failed: {_first_line(exc)}") from exc
    latency = Latency(float(np.median(seconds)) * 1e3, float(np.min(seconds)) * 1e3, len(seconds), f"rpc {remote.text}")
    return RemoteRun(outputs, latency)


def _first_line(exc: BaseException) -> str:
    lines = (part.strip() for part in str(exc).splitlines())
    line = next((part for part in lines if part and not part.startswith("Traceback")), type(exc).__name__)
    return line if len(line) <= 300 else line[:297] + "..."
