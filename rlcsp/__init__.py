"""rlcsp: FUSE-style crystal structure prediction with RL-guided move selection."""
from __future__ import annotations

import os

__version__ = "0.1.0"

# Every matrix rlcsp's relaxers touch is tiny (3x3 cell filters, Hessians of a few hundred), where threaded BLAS
# only spins: on a loaded 2-core machine it made ASE relaxations 13x slower. Use one BLAS thread unless the
# user asks otherwise with RLCSP_BLAS_THREADS (CHGNet's torch threads are set separately).
_BLAS_THREADS = os.environ.get("RLCSP_BLAS_THREADS", "1")
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _BLAS_THREADS)
try:
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(_BLAS_THREADS), user_api="blas")  # also when numpy was imported before rlcsp
except ImportError:  # pragma: no cover - threadpoolctl is a dependency
    pass
