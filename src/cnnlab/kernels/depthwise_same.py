"""The depthwise "same" path: groups = C and output (H/S, W/S), tap by tap on flat runs of the
input's own memory, without a padded copy.

The formulas are kernels/depthwise.py's. As in the "same" path of the dense convolution
(kernels/same.py), split the input into its S_h·S_w phases (none at stride 1: the input is its
own phase), each as large as the output: output (i, j) at tap (u, v) reads phase (r_u, r_v) at
(i + q_u, j + q_v), (q_u, r_u) = divmod(d·u − top, S), in flat memory a constant shift
s = q_u·W_out + q_v. So a tap is one multiply over a whole block of channels and samples,
tmp = w_tap · phase[p + s], added into y's own memory; the entries whose read crossed a row or
plane edge (i + q_u or j + q_v outside the phase: their pixel lies in the padding) are zeroed
in tmp before the add (_zero_outside: a strided fill of a few rows and columns), so the sums
are exact. Backward runs the same shifts the other way: dx's phases gather w_tap · dy[p − s],
and dw[tap] = Σ_p dy[p] · phase[p + s] over the same valid entries.

Applies when the stride divides H and W and the output is (H/S_h, W/S_w) (padding="same" with
any dilation whose extent fits: depthwise_same_applies). Blocks and threads as the general
depthwise path (chunks._channel_blocks); y, dx and dy are (K, N, H, W) / (C, N, H, W) memory,
so a block's channel runs are views and its multiply-adds write straight into them.
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.chunks import _channel_blocks
from cnnlab.kernels.geometry import _pairs, dilated, out_size
from cnnlab.runtime.threads import map_chunks


def depthwise_same_applies(h: int, w: int, kh: int, kw: int, stride, padding, dilation) -> bool:
    """The stride divides H and W and the output is (H/S_h, W/S_w)."""
    (sh, sw), _ = _pairs(stride, padding)
    _, extent = dilated(kh, kw, dilation)
    return h % sh == 0 and w % sw == 0 and \
        out_size(h, w, *extent, stride, padding) == (h // sh, w // sw)


def _taps(kh, kw, stride, padding, dilation, h_out, w_out):
    """[(u, v, (r_u, r_v), q_u, q_v)] for the taps that read some pixel (not only padding),
    the unshifted one (q = 0, 0), if any, first: it covers every output, so it initialises."""
    (sh, sw), ((pt, _), (pl, _)) = _pairs(stride, padding)
    (dh, dw), _ = dilated(kh, kw, dilation)
    rows = [divmod(u * dh - pt, sh) for u in range(kh)]  # (q, r)
    cols = [divmod(v * dw - pl, sw) for v in range(kw)]
    taps = [(u, v, (ru, rv), qu, qv) for u, (qu, ru) in enumerate(rows)
            for v, (qv, rv) in enumerate(cols) if abs(qu) < h_out and abs(qv) < w_out]
    return sorted(taps, key=lambda t: (t[3], t[4]) != (0, 0))


def _ranges(s: int, size: int) -> tuple[slice, slice]:
    """Output entries p and the entries p + s they read, within a run of `size`."""
    return (slice(0, size - s), slice(s, size)) if s >= 0 else (slice(-s, size), slice(0, size + s))


def _zero_outside(t: np.ndarray, qu: int, qv: int) -> None:
    """t (…, H_out, W_out): zeroes the entries whose read at shift (q_u, q_v) left the phase."""
    h, w = t.shape[-2:]
    if qu:
        (t[..., : -qu, :] if qu < 0 else t[..., h - qu :, :])[...] = 0
    if qv:
        (t[..., : -qv] if qv < 0 else t[..., w - qv :])[...] = 0


def _flat(a: np.ndarray, *shape) -> np.ndarray:
    """a reshaped to `shape` without a copy (ValueError if its memory does not allow it)."""
    return np.reshape(a, shape, copy=False)


def _phases(xb: np.ndarray, taps, stride) -> dict:
    """The phases the taps read of xb (cc, nb, H, W), each (cc, nb·H_out·W_out): at stride 1
    the block itself (a view when its channels are contiguous runs)."""
    (sh, sw), _ = _pairs(stride, 0)
    cc = xb.shape[0]
    if (sh, sw) == (1, 1):
        return {(0, 0): xb.reshape(cc, -1)}
    return {key: np.ascontiguousarray(xb[:, :, key[0]::sh, key[1]::sw]).reshape(cc, -1)
            for _, _, key, _, _ in taps}


def _setup(x: np.ndarray, weight: np.ndarray, stride, padding, dilation):
    """What forward and backward share: (N, C, M, H_out, W_out, the taps, the weight as
    (C, M, kh, kw), x as a (C, N, H, W) view)."""
    n, c, h, w = x.shape
    k, _, kh, kw = weight.shape
    m = k // c
    (sh, sw), _ = _pairs(stride, padding)
    h_out, w_out = h // sh, w // sw
    taps = _taps(kh, kw, stride, padding, dilation, h_out, w_out)
    return n, c, m, h_out, w_out, taps, weight.reshape(c, m, kh, kw), x.transpose(1, 0, 2, 3)


def depthwise_forward_same(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride,
                           padding, dilation=1) -> np.ndarray:
    """y of a depthwise convolution whose output is (H/S, W/S) (depthwise_same_applies): x
    (N, C, H, W), weight (K, 1, kh, kw), K = M·C. Returns y as an (N, K, H_out, W_out) view of
    (K, N, H_out, W_out) memory."""
    n, c, m, h_out, w_out, taps, w4, xc = _setup(x, weight, stride, padding, dilation)
    k = c * m
    y = np.empty((k, n, h_out, w_out), x.dtype)
    channel_blocks, sample_blocks = _channel_blocks(c, n, m * h_out * w_out)

    def block(span):
        c0, c1 = span
        for n0, n1 in sample_blocks:
            size = (n1 - n0) * h_out * w_out
            phases = _phases(xc[c0:c1, n0:n1], taps, stride)
            acc = _flat(y[c0 * m : c1 * m, n0:n1], c1 - c0, m, size)
            tmp = np.empty(acc.shape, x.dtype)
            if not taps or (taps[0][3], taps[0][4]) != (0, 0):
                acc[...] = 0
            for i, (u, v, key, qu, qv) in enumerate(taps):
                w_tap = w4[c0:c1, :, u, v, None]
                if i == 0 and (qu, qv) == (0, 0):  # every output valid: initialises acc
                    np.multiply(phases[key][:, None], w_tap, out=acc)
                    continue
                out, src = _ranges(qu * w_out + qv, size)
                np.multiply(phases[key][:, None, src], w_tap, out=tmp[:, :, out])
                _zero_outside(tmp.reshape(c1 - c0, m, n1 - n0, h_out, w_out), qu, qv)
                acc[:, :, out] += tmp[:, :, out]
            if bias is not None:
                acc += bias[c0 * m : c1 * m].reshape(c1 - c0, m, 1)

    map_chunks(block, channel_blocks)
    return y.transpose(1, 0, 2, 3)


def depthwise_backward_same(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride, padding,
                            dilation=1, input_grad: bool = True, bias_grad: bool = True):
    """Gradients of depthwise_forward_same: (dW, db, dx), dx None when input_grad is False, db
    None when bias_grad is False; dx an (N, C, H, W) view of (C, N, H, W) memory."""
    n, c, m, h_out, w_out, taps, w4, xc = _setup(x, weight, stride, padding, dilation)
    k = c * m
    dy_k = np.ascontiguousarray(dy.transpose(1, 0, 2, 3))  # free for what conv layers hand on
    db = dy_k.reshape(k, -1).sum(axis=1) if bias_grad else None
    dw = np.zeros(w4.shape, dy.dtype)
    dx = np.empty(xc.shape, dy.dtype) if input_grad else None
    channel_blocks, sample_blocks = _channel_blocks(c, n, m * h_out * w_out)

    def block(span):
        c0, c1 = span
        cc = c1 - c0
        for n0, n1 in sample_blocks:
            size = (n1 - n0) * h_out * w_out
            g = _flat(dy_k[c0 * m : c1 * m, n0:n1], cc, m, size)
            _weight_grad(g, xc[c0:c1, n0:n1], taps, stride, (h_out, w_out), dw[c0:c1])
            if input_grad:
                _input_grad(g, w4[c0:c1], taps, stride, (h_out, w_out), dx[c0:c1, n0:n1])

    map_chunks(block, channel_blocks)
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)


def _weight_grad(g: np.ndarray, xb: np.ndarray, taps, stride, out_hw, dw: np.ndarray) -> None:
    """dw (cc, M, kh, kw) += one block's share, from g = dy (cc, M, nb·H_out·W_out) and xb
    (cc, nb, H, W): per tap, M dot products (one batched matmul) of dy and the shifted phase.

    Both are laid out with P_r zero rows after every plane and P_c zero columns after every row
    (P the largest shift): a read that crosses a row or plane edge then lands on a zero, and dy
    is zero on the padding, so every dot product sums the valid terms only, exactly."""
    if not taps:  # every tap reads only padding: no weight has a gradient
        return
    (sh, sw), _ = _pairs(stride, 0)
    h, w = out_hw
    cc, m, size = g.shape
    nb = size // (h * w)
    pr, pc = max(abs(t[3]) for t in taps), max(abs(t[4]) for t in taps)
    hp, wp = h + pr, w + pc
    lead, plane = pr * wp + pc, cc * nb * hp * wp
    g_wide = np.zeros((cc, m, nb, hp, wp), g.dtype)
    g_wide[..., :h, :w] = g.reshape(cc, m, nb, h, w)
    g_wide = g_wide.reshape(cc, m, -1)
    phases = {}
    for key in dict.fromkeys(t[2] for t in taps):
        flat = np.zeros(lead + plane + lead, g.dtype)
        flat[lead : lead + plane].reshape(cc, nb, hp, wp)[:, :, :h, :w] = \
            xb[:, :, key[0]::sh, key[1]::sw]
        phases[key] = flat
    for u, v, key, qu, qv in taps:
        start = lead + qu * wp + qv
        shifted = phases[key][start : start + plane].reshape(cc, -1, 1)
        dw[:, :, u, v] += np.matmul(g_wide, shifted)[..., 0]


def _input_grad(g: np.ndarray, w4: np.ndarray, taps, stride, out_hw, dx: np.ndarray) -> None:
    """dx (cc, nb, H, W) of one block from g = dy (cc, M, nb·H_out·W_out): each tap's
    Σ_m w·g, zeroed where the forward read left the phase, added to its phase shifted by −s."""
    (sh, sw), _ = _pairs(stride, 0)
    h_out, w_out = out_hw
    cc, m, size = g.shape
    single = (sh, sw) == (1, 1)
    dphases: dict = {}
    tmp = np.empty((cc, size), g.dtype)
    for u, v, key, qu, qv in taps:  # the unshifted taps first: each initialises its phase
        out, src = _ranges(qu * w_out + qv, size)
        w_tap = w4[:, :, u, v]
        if key not in dphases:
            dphases[key] = _flat(dx, cc, size) if single else np.empty((cc, size), g.dtype)
            if (qu, qv) == (0, 0):
                _weighted(g, w_tap, dphases[key])
                continue
            dphases[key][...] = 0
        _weighted(g[:, :, out], w_tap, tmp[:, out])
        _zero_outside(tmp.reshape(cc, -1, h_out, w_out), qu, qv)
        dphases[key][:, src] += tmp[:, out]
    if single:
        if not dphases:  # no tap reads a pixel
            dx[...] = 0
        return
    for ru in range(sh):
        for rv in range(sw):
            dst = dx[:, :, ru::sh, rv::sw]
            phase = dphases.get((ru, rv))
            dst[...] = 0 if phase is None else phase.reshape(dst.shape)


def _weighted(g: np.ndarray, w_tap: np.ndarray, out: np.ndarray) -> None:
    """out (cc, L) = Σ_m w_tap[:, m] · g[:, m] for g (cc, M, L)."""
    if g.shape[1] == 1:
        np.multiply(g[:, 0], w_tap, out=out)
    else:
        np.einsum("cml,cm->cl", g, w_tap, out=out)
