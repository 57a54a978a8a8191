"""Capturing what TVM and LLVM write to the terminal, so that a user sees one line, not a log.

TVM's C++ logger and LLVM write straight to file descriptors 1 and 2 ("[14:13:07] block_builder.cc:67:
Warning: ..."), its ONNX importer prints with ``print`` and warns with ``warnings``. ``captured()``
redirects all four for the duration of a block and hands the text back; the caller decides what is
worth a note and logs the rest at debug level.

Rules:
- The redirection is process-wide (file descriptors are shared by threads), so output other threads
  write during the block is captured as well. Blocks must not run concurrently.
- Python-level streams are flushed before and after, so nothing written earlier lands in the capture
  and nothing captured leaks out late.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


class Capture:
    """Text captured by ``captured()``; complete once the block has exited."""

    def __init__(self) -> None:
        self.text = ""

    def lines(self) -> list[str]:
        """Distinct non-empty lines, in first-seen order (LLVM repeats a warning per function)."""
        seen: dict[str, None] = {}
        for line in self.text.splitlines():
            if line.strip():
                seen.setdefault(line.strip(), None)
        return list(seen)


@contextlib.contextmanager
def captured() -> Iterator[Capture]:
    capture = Capture()
    python_out = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = _redirect_fds(sink)
        try:
            with contextlib.redirect_stdout(python_out), contextlib.redirect_stderr(python_out):
                yield capture
        finally:
            _restore_fds(saved)
            sink.seek(0)
            native = sink.read().decode("utf-8", errors="replace")
            warned = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
            capture.text = python_out.getvalue() + native + warned


def _redirect_fds(sink) -> list[tuple[int, int]]:
    _flush_python_streams()
    saved = []
    for fd in (1, 2):
        saved.append((fd, os.dup(fd)))
        os.dup2(sink.fileno(), fd)
    return saved


def _restore_fds(saved: list[tuple[int, int]]) -> None:
    _flush_python_streams()
    for fd, copy in saved:
        os.dup2(copy, fd)
        os.close(copy)


def _flush_python_streams() -> None:
    # C stdio buffers too: a native printf still in the buffer would surface after the restore.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
