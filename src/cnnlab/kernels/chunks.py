"""The batch in chunks: how many samples a chunk holds, how the batch is cut, and the backward
skeleton that the three convolution paths (plain, wide, same) share; the depthwise paths' blocks
of channels and samples (_channel_blocks).

A convolution runs chunk by chunk so that a chunk's columns are still in cache when its GEMM
reads them, and never holds the whole batch's columns. The chunks are dealt to cnnlab's threads
(cnnlab.runtime.threads.map_chunks), so how the batch is cut depends on the thread count, and
with it the order in which the chunks' partial weight gradients are added: a result is
bit-identical for a given thread count, and may differ in the last bits between counts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cnnlab.runtime.threads import map_chunks, num_threads, total

Span = tuple[int, int]


def _chunk(rows: int, per_sample: int) -> int:
    """Samples per im2col chunk: about 2²⁰ column entries (4 MiB in float32), so a step never
    holds the whole batch's columns and a chunk is still in cache (in L3 on bench/speed.py's
    machine) when the GEMM reads it. Not smaller: every chunk is a BLAS call, and many small
    calls are slow when another process competes for the cores. The measurements behind 2²⁰
    are in docs/performance.md."""
    return max(1, (1 << 20) // max(1, rows * per_sample))


def _spans(n: int, step: int) -> list[Span]:
    """The batch's chunks (n0, n1) of at most `step` samples, as many as a multiple of cnnlab's
    threads and of equal size (±1), so that the threads get equal work (cnnlab.runtime.threads):
    128 samples at step 37 on 2 threads make 4 chunks of 32, not 37, 37, 37 and 17."""
    t = num_threads()
    count = -(-max(1, -(-n // max(1, step))) // t) * t  # chunks needed, up to a multiple of t
    step = max(1, -(-n // count))
    return [(n0, min(n, n0 + step)) for n0 in range(0, n, step)]


def conv_backward_chunks(dy: np.ndarray, spans: list[Span],
                         part: Callable[[int, Span, np.ndarray], np.ndarray],
                         bias_grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The backward skeleton of the convolution paths: (dW_mat, db), db None when bias_grad is
    False.

        dY = dy as (K, N, H_out, W_out) memory
        db[k] = Σ_{n,i,j} dY[k, n, i, j]
        dW_mat = Σ_chunks part(i, (n0, n1), dY[:, n0:n1])     added in chunk order

    part(i, span, dy_chunk) returns chunk i's share of dW_mat (K, C·kh·kw) and writes the
    chunk's dx, if the path computes one, into its own samples n0:n1 only: the chunks run on
    cnnlab's threads (map_chunks), and `total` adds their shares in chunk order, the same sum,
    bit for bit, however they were dealt to the threads.
    Shape: dy (N, K, H_out, W_out), any strides; spans the chunks (n0, n1), in order.
    """
    k = dy.shape[1]
    dy_k = np.ascontiguousarray(dy.transpose(1, 0, 2, 3))  # free for what conv layers hand on
    db = dy_k.reshape(k, -1).sum(axis=1) if bias_grad else None  # a pass over dy: only if wanted

    def chunk(i):
        n0, n1 = spans[i]
        return part(i, spans[i], dy_k[:, n0:n1])

    return total(map_chunks(chunk, range(len(spans)))), db


#: values per depthwise block (channels × samples × plane), 512 KiB of float32, in L2 with the
#: two or three arrays a tap reads and writes: of 2¹⁴…2²⁰ the fastest on 14×14 and 28×28 maps
#: (64×192 channels, one thread; 2¹⁶ within a few per cent, 2¹⁸ 20% slower)
DEPTHWISE_BLOCK = 1 << 17


def _channel_blocks(c: int, n: int, per_sample: int) -> tuple[list[Span], list[Span]]:
    """The depthwise paths' blocks: channel spans and sample spans of about DEPTHWISE_BLOCK
    values together (per_sample: the values of one channel and sample). Channels are
    independent, so the channel spans are dealt to the threads and may depend on their count
    (at most C/threads channels, so every thread gets work); the sample spans, whose partial
    weight gradients a channel adds in order, depend on the shapes only: the same bits on any
    thread count."""
    if n * per_sample <= DEPTHWISE_BLOCK:
        nb, cc = n, max(1, DEPTHWISE_BLOCK // (n * per_sample))
    else:
        nb, cc = max(1, DEPTHWISE_BLOCK // per_sample), 1
    cc = min(cc, -(-c // num_threads()))
    return ([(c0, min(c, c0 + cc)) for c0 in range(0, c, cc)],
            [(n0, min(n, n0 + nb)) for n0 in range(0, n, nb)])
