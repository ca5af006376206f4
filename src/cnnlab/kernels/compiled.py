"""Compiled loops (Numba) for the kernels that NumPy cannot make fast: Numba found, the flags
the loops may use, and their compilation, once per process and cached on disk.

Numba is a default dependency, imported on the first layer that runs a compiled loop only:
importing it costs about 0.2 s and 60 MB, which `import cnnlab` and the CLI's --help should
not pay. Without Numba the layers take the NumPy paths (HAVE_NUMBA is False).
"""

from __future__ import annotations

import importlib.util

HAVE_NUMBA = importlib.util.find_spec("numba") is not None

#: the fast-math flags the loops may use: reassociation (to vectorize sums), fused
#: multiply-adds, no signed zeros; never "no NaN/inf", so NaN and ±inf propagate as in NumPy
FASTMATH = {"reassoc", "contract", "nsz"}


def compile_loops(*fns, exact: bool = False, reorder: bool = True):
    """fns compiled by Numba (nogil, the flags above; none with exact=True, for a loop that must
    round as NumPy's expressions do; all but reassociation with reorder=False, for a loop whose
    sums must add in the source's order), loaded from its disk cache when there. Where Numba
    finds no folder it may write its cache to (a read-only install and home), they are compiled
    in this process instead. Callers keep the result (functools.cache)."""
    import numba

    flags = False if exact else FASTMATH if reorder else FASTMATH - {"reassoc"}
    try:
        jit = numba.njit(nogil=True, fastmath=flags, cache=True)
        return tuple(jit(fn) for fn in fns)
    except RuntimeError:  # Numba's "cannot cache function ...: no locator available"
        jit = numba.njit(nogil=True, fastmath=flags)
        return tuple(jit(fn) for fn in fns)
