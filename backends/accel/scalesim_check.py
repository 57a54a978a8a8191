"""The cycle model's compute cycles against SCALE-Sim's weight-stationary systolic array (``scalesim`` 3.0).

``scalesim_compute_cycles(m, k, n, rows, cols)`` runs SCALE-Sim's own compute model
(``scalesim.compute.systolic_compute_ws``) on an ``m x k x n`` GEMM (``k`` mapped to the array's
rows, ``n`` to its columns, as SCALE-Sim's GEMM mode does) and returns the length of its demand
trace: the cycles the array computes, without memory stalls. SCALE-Sim's full run (``run_scale``)
also models its SRAMs; in 3.0.0 that part fails under numpy 2 (``TypeError: only 0-dimensional arrays
can be converted to Python scalars`` in ``double_buffered_scratchpad_mem``), and the stalls are not
what the compute cycles are compared on, so only the compute model is run.

SCALE-Sim is a benchmark anchor (extra ``bench``), not a dependency of the backend.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

_CONFIG = """[general]
run_name = graphpress

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 1024
FilterSramSzkB: 1024
OfmapSramSzkB: 1024
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 16
Dataflow: ws
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def _config(rows: int, cols: int):
    from scalesim.scale_config import scale_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale.cfg"
        path.write_text(_CONFIG.format(rows=rows, cols=cols))
        config = scale_config()
        config.read_conf_file(str(path))
    return config


def scalesim_compute_cycles(m: int, k: int, n: int, rows: int, cols: int) -> int:
    from scalesim.compute.systolic_compute_ws import systolic_compute_ws

    compute = systolic_compute_ws()
    # Operand matrices hold addresses; only their shapes decide the cycle count.
    compute.set_params(config_obj=_config(rows, cols), ifmap_op_mat=np.zeros((m, k), np.float32),
                       filter_op_mat=np.zeros((k, n), np.float32), ofmap_op_mat=np.zeros((m, n), np.float32))
    compute.create_ifmap_demand_mat()
    return int(compute.ifmap_demand_matrix.shape[0])
