"""Keeping freed memory for the next training step (glibc's malloc).

A training step allocates and frees the same large arrays every time (activations, columns,
gradients). By default glibc hands blocks of 128 KiB and more back to the kernel when they are
freed (mmap'd blocks, and trimming the top of the heap), so the next step faults every 4 KiB
page in again and the kernel zeroes it: on bench/speed.py's machine a ResNet-8 step (batch 128)
took 16,000 page faults and about a fifth of its time there; fmnist-cnn 2,600.

keep_freed_memory() asks glibc to keep freed blocks for reuse instead: blocks up to 32 MiB (the
largest threshold glibc allows) come from the heap, and the heap is never trimmed. A step then
faults about twice. The cost: the process keeps its high-water mark of memory until it exits
(what PyTorch's caching allocators do on a GPU), and the setting holds for the whole process,
since malloc is shared. So no layer applies it: cnnlab's entry points do, once per process
(cl.fit, cl.evaluate, cl.predict, cl.lr_find and the cnnlab command, through
cnnlab.runtime.apply_defaults). Set the environment variable CNNLAB_KEEP_MEMORY=0, or call
cnnlab.runtime.configure(keep_memory=False), to leave malloc alone; keep_freed_memory(False)
returns to glibc's fixed default thresholds. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 2**31 - 1}
_DEFAULT = {_M_MMAP_THRESHOLD: 128 << 10, _M_TRIM_THRESHOLD: 128 << 10}
_decided = False  # set once the policy has been applied or chosen by the user


def _glibc():
    """The C library already loaded into the process, if it is glibc."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory(keep: bool = True) -> bool:
    """keep=True: freed blocks up to 32 MiB stay in the process for reuse (see the module
    docstring); keep=False: glibc's default thresholds (128 KiB), fixed. Returns whether glibc
    accepted the settings (False where malloc is not glibc's)."""
    global _decided
    _decided = True
    libc = _glibc()
    if libc is None:
        return False
    settings = _KEEP if keep else _DEFAULT
    return all(libc.mallopt(option, value) == 1 for option, value in settings.items())


def leave_alone() -> None:
    """malloc stays as it is for the rest of the process: apply_default() does nothing."""
    global _decided
    _decided = True


def apply_default() -> None:
    """Once per process, keep_freed_memory() unless CNNLAB_KEEP_MEMORY=0 or the caller already
    chose. Called by cnnlab's entry points (cnnlab.runtime.apply_defaults), never by a layer."""
    global _decided
    if _decided:
        return
    if os.environ.get("CNNLAB_KEEP_MEMORY", "1").strip() == "0":
        _decided = True
        return
    keep_freed_memory(True)
