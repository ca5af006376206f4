"""Data-parallel training over MPI: one model on K processes, the same math as one process.

    mpiexec -n 2 cnnlab train ...              # the command notices mpiexec by itself
    cl.fit(model, data, ..., distributed=True)  # in a script started by mpiexec -n K

Needs the optional extra `cnnlab[mpi]` (mpi4py and the mpich wheel); without it cnnlab imports
and trains as one process. How a step goes (cnnlab.train.loop):
- every process draws the same sample order from the seed and takes its own contiguous share of
  each global batch (B/K samples; the first B mod K processes one more), so no process reads or
  preprocesses another's images;
- each computes the mean gradient over its share, weighted by its share of the batch (n_r/B), and
  one Allreduce over one flat buffer in the parameters' fixed order sums them: the global batch
  mean, bit for bit repeatable for a given K and thread count;
- rank 0's weights are broadcast at the start; BatchNorm's running statistics are averaged after
  every step, so they are the same on every rank; only rank 0 writes files and prints.
Imports core only, and mpi4py when a Comm is made.
"""

from __future__ import annotations

import os

import numpy as np

from cnnlab.core import Layer

#: environment variables a launcher sets to the number of processes (MPICH/Hydra, Open MPI, PMIx)
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


def launched() -> bool:
    """Whether this process was started by mpiexec (or srun) with more than one process."""
    return any(os.environ.get(name, "1").strip() not in ("", "0", "1") for name in SIZE_VARIABLES)


class Comm:
    """The processes of one training job (MPI_COMM_WORLD by default): rank, size, and the few
    collective operations training needs."""

    def __init__(self, comm=None) -> None:
        try:
            from mpi4py import MPI  # the optional extra: imported only when asked for
        except ImportError:
            raise RuntimeError("distributed training needs the mpi extra: pip install "
                               "'cnnlab[mpi]' (mpi4py and mpich)") from None
        self.mpi = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def share(self, n: int) -> slice:
        """This rank's contiguous share of n items: n // K each, the first n mod K one more."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum(self, values) -> np.ndarray:
        """The element-wise sum over the ranks of `values` (float64)."""
        buffer = np.array(values, np.float64)
        self.comm.Allreduce(self.mpi.IN_PLACE, buffer, op=self.mpi.SUM)
        return buffer

    def broadcast(self, arrays: list[np.ndarray]) -> None:
        """Rank 0's values of `arrays` copied into every rank's, one Bcast per array."""
        for array in arrays:
            self.comm.Bcast(array, root=0)

    def average_gradients(self, model: Layer, weight: float) -> None:
        """Every trainable .grad becomes Σ_r weight_r·grad_r: one Allreduce over one flat buffer,
        in the order of model.parameters()."""
        grads = [p for p in model.parameters().values() if p.trainable and p.grad is not None]
        if not grads:
            return
        flat = np.concatenate([p.grad.reshape(-1) for p in grads])  # the one copy a step makes
        flat *= flat.dtype.type(weight)
        self.comm.Allreduce(self.mpi.IN_PLACE, flat, op=self.mpi.SUM)
        start = 0
        for p in grads:
            p.grad = flat[start : start + p.grad.size].reshape(p.grad.shape)
            start += p.grad.size

    def average_buffers(self, model: Layer) -> None:
        """Non-learned state (BatchNorm's running statistics) averaged over the ranks in place:
        one Allreduce over all of it, in float64."""
        buffers = list(model.buffers().values())
        if not buffers:
            return
        total = np.concatenate([b.reshape(-1) for b in buffers]).astype(np.float64)
        self.comm.Allreduce(self.mpi.IN_PLACE, total, op=self.mpi.SUM)
        total /= self.size
        start = 0
        for buffer in buffers:
            buffer[...] = total[start : start + buffer.size].reshape(buffer.shape)
            start += buffer.size

    def agree(self, facts: dict[str, object]) -> None:
        """ValueError on every rank, naming what differs and where, unless every process has the
        same `facts` (versions, data size, options): processes that disagree would train apart."""
        everyone = self.comm.allgather(facts)
        for key in facts:
            values = [theirs.get(key) for theirs in everyone]
            if any(v != values[0] for v in values):
                shown = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
                raise ValueError(f"distributed: the processes disagree on {key} ({shown}); start "
                                 "them with the same cnnlab, data and options")

    def abort(self, code: int = 1) -> None:
        """Ends every process of the job: survivors blocked in a collective do not wait forever."""
        self.comm.Abort(code)


def world(distributed) -> Comm | None:
    """fit's `distributed` argument as a Comm: True → MPI_COMM_WORLD, a Comm as given, None or
    False → None (one process)."""
    if distributed is None or distributed is False:
        return None
    return distributed if isinstance(distributed, Comm) else Comm()
