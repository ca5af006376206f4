"""The process cnnlab runs in: its own threads and glibc's malloc policy.

Holds `threads` (how a layer's work is split over the cores, and the BLAS kept to one thread
while it is) and `memory` (whether freed blocks stay in the process for the next step). Imports
nothing of cnnlab: every other part may import it.

Two kinds of setting, kept apart:
- scoped: inside Sequential.forward and backward the BLAS runs on one thread while cnnlab's own
  threads work (`threads.single_blas`), restored on return. A bare `model.forward(x)` uses
  `threads.num_threads()` threads and changes nothing process-wide.
- process-wide and irreversible: the malloc policy. Applied only at entry points (`cl.fit`,
  `cl.evaluate`, `cl.predict`, `cl.lr_find`, the `cnnlab` command) through `apply_defaults()`,
  or by an explicit `configure(...)`; never by a layer.

    cl.runtime.configure(keep_memory=False)   # an embedder: never touch my allocator
    cl.runtime.configure(num_threads=4)       # or CNNLAB_NUM_THREADS=4
"""

from __future__ import annotations

from cnnlab.runtime import memory, threads


def configure(*, keep_memory: bool | None = None, num_threads: int | None = None) -> None:
    """Process settings for a program that embeds cnnlab.

    keep_memory: True applies the malloc policy now (freed blocks up to 32 MiB stay for reuse,
        see cnnlab.runtime.memory); False means cnnlab never changes malloc in this process,
        not even at its entry points; None leaves the choice as it is (the entry points apply
        the policy unless CNNLAB_KEEP_MEMORY=0).
    num_threads: the threads cnnlab splits a layer's work over (threads.set_num_threads).
    """
    if keep_memory is True:
        memory.keep_freed_memory(True)
    elif keep_memory is False:
        memory.leave_alone()
    elif keep_memory is not None:
        raise ValueError(f"cnnlab.runtime.configure: keep_memory must be True, False or None. "
                         f"Received: keep_memory={keep_memory!r}")
    if num_threads is not None:
        threads.set_num_threads(num_threads)


def apply_defaults() -> None:
    """What an entry point (cl.fit, cl.evaluate, cl.predict, the CLI) calls first: the malloc
    policy, once per process, unless configure(keep_memory=False) or CNNLAB_KEEP_MEMORY=0 said
    no."""
    memory.apply_default()


__all__ = ["apply_defaults", "configure", "memory", "threads"]
