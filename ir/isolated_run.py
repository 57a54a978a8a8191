"""Child process of ``ir.runtime.preflight``: run a model once in ONNX Runtime, away from graphpress.

Usage: ``python isolated_run.py FOLDER MEMORY_CAP_BYTES``. FOLDER holds ``model.onnx`` and
``feeds.npz``; the outputs are discarded. ONNX Runtime's own error goes to ``error.txt``
with exit status 3; a crash shows as the signal that killed the process. Imports only numpy and
onnxruntime, so that starting it costs little.
"""

import os
import resource
import sys


def main() -> int:
    folder, cap = sys.argv[1], int(sys.argv[2])
    if cap > 0:
        # An allocation past the cap fails inside ONNX Runtime (an error) instead of the kernel's
        # out-of-memory killer taking this process or the machine.
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options, providers=["CPUExecutionProvider"])
        with np.load(os.path.join(folder, "feeds.npz"), allow_pickle=False) as data:
            feeds = {name: data[name] for name in data.files}
        outputs = session.run(None, feeds)
    except Exception as exc:  # ONNX Runtime raises its own exception types without a common base
        with open(os.path.join(folder, "error.txt"), "w") as handle:
            handle.write(" ".join(str(exc).split())[:300] or type(exc).__name__)
        return 3
    del outputs
    return 0


if __name__ == "__main__":
    sys.exit(main())
