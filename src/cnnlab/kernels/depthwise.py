"""The depthwise path: groups = C, every filter sees one input channel, computed tap by tap.

Forward, filter k = c·M + m of input channel c (M = K/C filters per channel), output (i, j):
    y[n, k, i, j] = b[k] + Σ_{u,v} w[k, 0, u, v] · x_pad[n, c, S·i + d·u, S·j + d·v]
Backward, with dy the same way:
    dw[k, 0, u, v] = Σ_{n,i,j} dy[n, k, i, j] · x_pad[n, c, S·i + d·u, S·j + d·v]
    db[k] = Σ_{n,i,j} dy[n, k, i, j]
    dx_pad[n, c, S·i + d·u, S·j + d·v] += Σ_m w[c·M + m, 0, u, v] · dy[n, c·M + m, i, j]
As a GEMM this is a (1 × F·F)·(F·F × L) product per channel: im2col's F·F copies would cost more
than its products. So each kernel tap (u, v) is one multiply-add over a whole block of channels,
F·F of them, on memory laid out so that every tap reads one contiguous run per channel:

The input is split into its S_h·S_w phases (rows r, r + S, …: tap u reads phase r_u = d·u mod S
shifted by q_u = d·u div S rows), each zero-padded into a (n, H_p, W_p) plane per channel with
H_p = H_out + max q_u and W_p = W_out + max q_v. Computed over whole phase planes, output
(i, j) at tap (u, v) reads entry (i + q_u, j + q_v), in flat memory the constant shift
s = q_u·W_p + q_v: one long run per channel for all of a block's samples. The outputs with
i ≥ H_out or j ≥ W_out are junk (they read across a row or plane edge) and are dropped when
copying out; in backward dy is zero there, so they add nothing. At stride 1 there is one phase,
the zero-padded input itself.

The work runs in blocks of channels and samples of about 2¹⁷ values (in L2 cache), the channel
blocks dealt to cnnlab's threads (chunks._channel_blocks). A channel's weight gradient adds its
sample blocks in order, and the sample blocks do not depend on the thread count: the same bits
on any count.

depthwise_forward and depthwise_backward take the "same" path (kernels/depthwise_same.py: the
input's own memory, no padded copy, no junk) when the output is (H/S, W/S), and the padded
phases here otherwise ("valid" or other padding, fit="floor"); both are tested against PyTorch
and against each other.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlab.kernels.chunks import _channel_blocks
from cnnlab.kernels.depthwise_same import (
    depthwise_backward_same,
    depthwise_forward_same,
    depthwise_same_applies,
)
from cnnlab.kernels.geometry import _pairs, dilated, out_size
from cnnlab.runtime.threads import map_chunks


class Plan(NamedTuple):
    """The layout of a depthwise convolution: output size, phase plane size, and per tap
    (u, v, phase, shift); per phase the rows and columns of the input it holds."""

    h_out: int
    w_out: int
    hp: int
    wp: int
    taps: list[tuple[int, int, tuple[int, int], int]]
    phases: dict[tuple[int, int], tuple[tuple[int, int, int], tuple[int, int, int]]]

    @property
    def tail(self) -> int:
        """Entries past the last plane that the largest shift reads (zeros)."""
        return max(shift for *_, shift in self.taps)


def _span(size: int, r: int, before: int, s: int, limit: int) -> tuple[int, int, int]:
    """Phase r of an axis padded by `before`: entry t is input index s·t + r − before. Returns
    (t0, t1, first input index), the entries t0 ≤ t < t1 (< limit) that lie inside the input."""
    t0 = max(0, -(-(before - r) // s))
    t1 = min(limit, (size - 1 + before - r) // s + 1)
    return t0, max(t0, t1), s * t0 + r - before


def plan(h: int, w: int, kh: int, kw: int, stride, padding, dilation) -> Plan:
    """The Plan of a depthwise convolution of an (H, W) input (see the module docstring)."""
    (sh, sw), ((pt, _), (pl, _)) = _pairs(stride, padding)
    (dh, dw), extent = dilated(kh, kw, dilation)
    h_out, w_out = out_size(h, w, *extent, stride, padding)
    rows = [divmod(u * dh, sh) for u in range(kh)]  # (q, r) per kernel row
    cols = [divmod(v * dw, sw) for v in range(kw)]
    hp, wp = h_out + max(q for q, _ in rows), w_out + max(q for q, _ in cols)
    taps = [(u, v, (ru, rv), qu * wp + qv)
            for u, (qu, ru) in enumerate(rows) for v, (qv, rv) in enumerate(cols)]
    phases = {(ru, rv): (_span(h, ru, pt, sh, hp), _span(w, rv, pl, sw, wp))
              for _, _, (ru, rv), _ in taps}
    return Plan(h_out, w_out, hp, wp, taps, phases)


def _phases(xc: np.ndarray, p: Plan, stride) -> dict[tuple[int, int], np.ndarray]:
    """xc (cc, nb, H, W) as its zero-padded phases, each flat: cc·nb·H_p·W_p entries + p.tail."""
    (sh, sw), _ = _pairs(stride, 0)
    cc, nb = xc.shape[:2]
    out = {}
    for key, ((t0, t1, r0), (s0, s1, c0)) in p.phases.items():
        flat = np.zeros(cc * nb * p.hp * p.wp + p.tail, xc.dtype)
        if t1 > t0 and s1 > s0:
            plane = flat[: cc * nb * p.hp * p.wp].reshape(cc, nb, p.hp, p.wp)
            plane[:, :, t0:t1, s0:s1] = xc[:, :, r0 : r0 + (t1 - t0 - 1) * sh + 1 : sh,
                                           c0 : c0 + (s1 - s0 - 1) * sw + 1 : sw]
        out[key] = flat
    return out


def _unphase(dphases: dict, p: Plan, stride, out: np.ndarray) -> None:
    """The adjoint of _phases: each phase's entries inside the input written into out
    (cc, nb, H, W), which starts at zero (pixels no tap reads keep it)."""
    (sh, sw), _ = _pairs(stride, 0)
    cc, nb = out.shape[:2]
    for key, ((t0, t1, r0), (s0, s1, c0)) in p.phases.items():
        if t1 > t0 and s1 > s0:
            plane = dphases[key][: cc * nb * p.hp * p.wp].reshape(cc, nb, p.hp, p.wp)
            out[:, :, r0 : r0 + (t1 - t0 - 1) * sh + 1 : sh,
                c0 : c0 + (s1 - s0 - 1) * sw + 1 : sw] = plane[:, :, t0:t1, s0:s1]


def depthwise_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride,
                      padding, dilation=1) -> np.ndarray:
    """y of a depthwise convolution: x (N, C, H, W), weight (K, 1, kh, kw) with K = M·C, bias
    (K,) or None. Returns y as an (N, K, H_out, W_out) view of (K, N, H_out, W_out) memory.
    The "same" path when the output is (H/S, W/S), else the padded phases."""
    if depthwise_same_applies(*x.shape[2:], *weight.shape[2:], stride, padding, dilation):
        return depthwise_forward_same(x, weight, bias, stride, padding, dilation)
    return depthwise_forward_padded(x, weight, bias, stride, padding, dilation)


def depthwise_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride, padding,
                       dilation=1, input_grad: bool = True, bias_grad: bool = True):
    """Gradients of depthwise_forward: (dW, db, dx), dx None when input_grad is False, db None
    when bias_grad is False; dx an (N, C, H, W) view of (C, N, H, W) memory."""
    flags = {"input_grad": input_grad, "bias_grad": bias_grad}
    if depthwise_same_applies(*x.shape[2:], *weight.shape[2:], stride, padding, dilation):
        return depthwise_backward_same(dy, x, weight, stride, padding, dilation, **flags)
    return depthwise_backward_padded(dy, x, weight, stride, padding, dilation, **flags)


def depthwise_forward_padded(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride,
                             padding, dilation=1) -> np.ndarray:
    """depthwise_forward on zero-padded phases: any window (see the module docstring)."""
    n, c, h, w = x.shape
    k, _, kh, kw = weight.shape
    m = k // c
    p = plan(h, w, kh, kw, stride, padding, dilation)
    w4 = weight.reshape(c, m, kh, kw)
    xc = x.transpose(1, 0, 2, 3)
    y = np.empty((k, n, p.h_out, p.w_out), x.dtype)
    channel_blocks, sample_blocks = _channel_blocks(c, n, m * p.hp * p.wp)

    def block(span):
        c0, c1 = span
        for n0, n1 in sample_blocks:
            size = (n1 - n0) * p.hp * p.wp
            phases = _phases(xc[c0:c1, n0:n1], p, stride)
            acc = np.empty((c1 - c0, m, size), x.dtype)
            tmp = np.empty_like(acc)
            for i, (u, v, key, s) in enumerate(p.taps):
                src = phases[key][s : s + (c1 - c0) * size].reshape(c1 - c0, 1, size)
                np.multiply(src, w4[c0:c1, :, u, v, None], out=acc if i == 0 else tmp)
                if i:
                    acc += tmp
            wide = acc.reshape((c1 - c0) * m, n1 - n0, p.hp, p.wp)[:, :, : p.h_out, : p.w_out]
            target = y[c0 * m : c1 * m, n0:n1]
            if bias is None:
                target[...] = wide
            else:
                np.add(wide, bias[c0 * m : c1 * m, None, None, None], out=target)

    map_chunks(block, channel_blocks)
    return y.transpose(1, 0, 2, 3)


def depthwise_backward_padded(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride, padding,
                              dilation=1, input_grad: bool = True, bias_grad: bool = True):
    """Gradients of depthwise_forward_padded, as depthwise_backward's. dy (N, K, H_out, W_out)
    and x (N, C, H, W), any strides."""
    n, c, h, w = x.shape
    k, _, kh, kw = weight.shape
    m = k // c
    p = plan(h, w, kh, kw, stride, padding, dilation)
    w4 = weight.reshape(c, m, kh, kw)
    xc = x.transpose(1, 0, 2, 3)
    dy_k = np.ascontiguousarray(dy.transpose(1, 0, 2, 3))  # free for what conv layers hand on
    db = dy_k.reshape(k, -1).sum(axis=1) if bias_grad else None
    dw = np.zeros((c, m, kh, kw), dy.dtype)
    dx = np.zeros((c, n, h, w), dy.dtype) if input_grad else None
    channel_blocks, sample_blocks = _channel_blocks(c, n, m * p.hp * p.wp)

    def block(span):
        c0, c1 = span
        cc = c1 - c0
        for n0, n1 in sample_blocks:
            size = (n1 - n0) * p.hp * p.wp
            g = np.zeros((cc, m, n1 - n0, p.hp, p.wp), dy.dtype)
            g[..., : p.h_out, : p.w_out] = dy_k[c0 * m : c1 * m, n0:n1].reshape(
                cc, m, n1 - n0, p.h_out, p.w_out)
            g = g.reshape(cc, m, size)
            phases = _phases(xc[c0:c1, n0:n1], p, stride)
            dphases = {key: np.zeros_like(flat) for key, flat in phases.items()} if input_grad else {}
            for u, v, key, s in p.taps:
                src = phases[key][s : s + cc * size].reshape(cc, size)
                dw[c0:c1, :, u, v] += np.einsum("cml,cl->cm", g, src)
                if input_grad:
                    run = dphases[key][s : s + cc * size].reshape(cc, size)
                    run += g[:, 0] * w4[c0:c1, 0, u, v, None] if m == 1 else \
                        np.einsum("cml,cm->cl", g, w4[c0:c1, :, u, v])
            if input_grad:
                _unphase(dphases, p, stride, dx[c0:c1, n0:n1])

    map_chunks(block, channel_blocks)
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)
