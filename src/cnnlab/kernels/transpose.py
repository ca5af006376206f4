"""The transposed convolution: a convolution's input gradient, used as a layer's forward.

A convolution G with weight w (C, K, kh, kw), stride S and padding P maps a (K, H_out, W_out)
volume to (C, H, W), H = floor((H_out + 2P − kh)/S) + 1. Its transpose maps (C, H, W) back:
    H_out = (H − 1)·S − 2P + kh + output_padding      (output_padding < S: the rows G's floor
                                                       drops, which only the bias reaches)
Forward, with X_mat = x as (C, N·H·W) and W_mat = w.reshape(C, K·kh·kw), G's backward:
    y = col2im(W_matᵀ · X_mat) + b                    (K, N, H_out, W_out)
Backward, with D_col = im2col(dy) (K·kh·kw, N·H·W), G's forward:
    dx = W_mat · D_col     dW_mat = X_mat · D_colᵀ     db = Σ_{n,i,j} dy
Batch chunk by chunk over cnnlab's threads (chunks._spans), the weight gradient's parts added in
chunk order. When G's geometry is "same" (its output (H_out/S, W_out/S): kernel 4, stride 2,
padding 1; kernel 3, stride 2, padding 1, output_padding 1; kernel 2, stride 2; any kernel
with stride 1 and padding (kh − 1)/2), im2col and col2im take the "same" path's shifted runs
(kernels/same.py), else the plain ones.
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.chunks import _chunk, _spans
from cnnlab.kernels.plain import col2im, im2col
from cnnlab.kernels.same import col2im_same, conv_same_applies, im2col_same
from cnnlab.runtime.threads import map_chunks, total


def _same(out_hw, kh: int, kw: int, stride, padding) -> bool:
    return conv_same_applies(*out_hw, kh, kw, stride, padding)


def conv_transpose_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride,
                           padding, out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """y of the transposed convolution of x (N, C, H, W) with weight (C, K, kh, kw), to an
    output of out_hw = (H_out, W_out) (the caller adds output_padding). Returns y as an
    (N, K, H_out, W_out) view of (K, N, H_out, W_out) memory, and x as (C, N, H, W) memory (no
    copy when x is what a convolution handed on), which backward needs."""
    c, k, kh, kw = weight.shape
    xc = np.ascontiguousarray(x.transpose(1, 0, 2, 3))
    n = xc.shape[1]
    w_t = weight.reshape(c, -1).T
    y = np.empty((k, n, *out_hw), x.dtype)
    same = _same(out_hw, kh, kw, stride, padding)

    def chunk(span):
        n0, n1 = span
        cols = w_t @ xc[:, n0:n1].reshape(c, -1)
        if same:
            col2im_same(cols, y[:, n0:n1], kh, kw, stride, padding)
        else:
            y[:, n0:n1] = col2im(cols, (n1 - n0, k, *out_hw), kh, kw, stride, padding).transpose(
                1, 0, 2, 3)
        if bias is not None:
            y[:, n0:n1] += bias[:, None, None, None]

    map_chunks(chunk, _spans(n, _chunk(k * kh * kw, xc.shape[2] * xc.shape[3])))
    return y.transpose(1, 0, 2, 3), xc


def conv_transpose_backward(dy: np.ndarray, xc: np.ndarray, weight: np.ndarray, stride, padding,
                            input_grad: bool = True, bias_grad: bool = True):
    """Gradients of conv_transpose_forward: (dW, db, dx), dx None when input_grad is False and
    db None when bias_grad is False. dy (N, K, H_out, W_out), any strides; xc the forward's
    (C, N, H, W) memory; dx an (N, C, H, W) view of (C, N, H, W) memory."""
    c, k, kh, kw = weight.shape
    _, n, h, w = xc.shape
    out_hw = dy.shape[2:]
    w_mat = weight.reshape(c, -1)
    dy_k = np.ascontiguousarray(dy.transpose(1, 0, 2, 3))  # free for what conv layers hand on
    db = dy_k.reshape(k, -1).sum(axis=1) if bias_grad else None
    dx = np.empty((c, n, h, w), dy.dtype) if input_grad else None
    same = _same(out_hw, kh, kw, stride, padding)

    def chunk(span):
        n0, n1 = span
        if same:
            cols = im2col_same(dy_k[:, n0:n1], kh, kw, stride, padding)
        else:
            cols = im2col(dy_k[:, n0:n1].transpose(1, 0, 2, 3), kh, kw, stride, padding)
        if input_grad:
            np.matmul(w_mat, cols, out=np.reshape(dx[:, n0:n1], (c, -1), copy=False))
        return xc[:, n0:n1].reshape(c, -1) @ cols.T

    spans = _spans(n, _chunk(k * kh * kw, h * w))
    dw = total(map_chunks(chunk, spans))
    return dw.reshape(weight.shape), db, None if dx is None else dx.transpose(1, 0, 2, 3)
