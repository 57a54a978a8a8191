"""Errors graphpress raises on purpose. Each carries a one-line, user-facing message.

The command line prints ``str(error)`` and exits with ``exit_code``; it shows a traceback only under
``--debug``. Anything that is not a ``GraphpressError`` is a bug and is reported as one.
"""

from __future__ import annotations


class GraphpressError(Exception):
    """Base class: a failure the user can act on."""

    exit_code = 1


class UsageError(GraphpressError):
    """The command or the API was called wrongly (unknown pass, bad option, bad argument)."""

    exit_code = 2


class ModelLoadError(GraphpressError):
    """A model file is missing, empty, truncated or not ONNX."""


class ModelSaveError(GraphpressError):
    """A model or artifact could not be written."""


class InvalidModelError(GraphpressError):
    """A model is structurally broken (cycle, dangling value, checker failure)."""


class PassFailedError(GraphpressError):
    """A pass raised or broke equivalence under ``--strict``."""

    def __init__(self, pass_name: str, message: str):
        super().__init__(f"pass '{pass_name}' failed: {message}")
        self.pass_name = pass_name


class BudgetError(GraphpressError):
    """A lossy pipeline's output error broke the user's budget (``--min-sqnr``)."""


class BackendError(GraphpressError):
    """A target could not be compiled or is not supported."""
