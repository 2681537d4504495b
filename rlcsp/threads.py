"""One BLAS thread where runs start, rather than as a side effect of ``import rlcsp``.

Every matrix rlcsp's relaxers touch is tiny (3x3 cell filters, Hessians of a few hundred), where threaded BLAS
only spins: on a loaded 2-core machine it made ASE relaxations 13x slower. ``RLCSP_BLAS_THREADS`` overrides.
"""
from __future__ import annotations

import os


def limit_blas_threads() -> None:
    """Cap the BLAS thread pools already loaded (numpy's OpenBLAS) at RLCSP_BLAS_THREADS, default 1."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(os.environ.get("RLCSP_BLAS_THREADS", "1")), user_api="blas")
