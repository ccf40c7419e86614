"""conv and conv_transpose (MIL semantics), vectorized as matrix products and shifted sums."""

from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .registry import ints, op


def _spatial_pads(
    pad_type: str,
    pad,
    sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> List[tuple]:
    """(before, after) per spatial dim for MIL's pad_type valid / custom / same / same_lower."""
    if pad_type == "valid":
        return [(0, 0)] * len(sizes)
    if pad_type == "custom":
        p = ints(pad) if pad is not None else [0] * (2 * len(sizes))
        return [(p[2 * i], p[2 * i + 1]) for i in range(len(sizes))]
    if pad_type in ("same", "same_lower"):
        pads = []
        for size, k, s, d in zip(sizes, kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if pad_type == "same" else (big, small))
        return pads
    raise ValueError(f"pad_type {pad_type!r} is not defined by MIL")


def _conv_args(x, weight, strides, dilations, pad, groups):
    """Both conv ops' arguments as 2-D ones: conv1d runs as conv2d over a unit height.

    Returns x, weight, strides, dilations, pad (None or a flat int list), groups, was_1d.
    """
    strides = ints(strides) if strides is not None else [1] * (x.ndim - 2)
    dilations = ints(dilations) if dilations is not None else [1] * (x.ndim - 2)
    pad = ints(pad) if pad is not None else None
    if x.ndim == 3:
        pad = None if pad is None else [0, 0] + pad
        return x[:, :, None, :], weight[:, :, None, :], [1] + strides, [1] + dilations, pad, int(groups), True
    if x.ndim != 4:
        raise ValueError(f"only 1-D and 2-D convolutions are supported, got a rank-{x.ndim} input")
    return x, weight, strides, dilations, pad, int(groups), False


def _finish(out: np.ndarray, bias, was_1d: bool) -> np.ndarray:
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out[:, :, 0, :] if was_1d else out


def _conv2d_dense(x: np.ndarray, w: np.ndarray, strides, dilations) -> np.ndarray:
    """One group: x (N, C, H, W) already padded, w (O, C, kh, kw) -> (N, O, Ho, Wo)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    if kh == kw == 1:
        x = x[:, :, ::sh, ::sw]
        ho, wo = x.shape[2:]
        return np.matmul(w.reshape(o, c), x.reshape(n, c, ho * wo)).reshape(n, o, ho, wo)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    windows = sliding_window_view(x, (span_h, span_w), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    ho, wo = windows.shape[2:4]
    # (N, C, Ho, Wo, kh, kw) -> (N, C*kh*kw, Ho*Wo): one matrix product per image
    columns = windows.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, ho * wo)
    return np.matmul(w.reshape(o, c * kh * kw), columns).reshape(n, o, ho, wo)


def _conv2d_depthwise(x: np.ndarray, w: np.ndarray, strides, dilations) -> np.ndarray:
    """groups == channels, one filter each: a sum of kh*kw shifted, scaled copies."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    per = o // c
    out = np.zeros((n, o, ho, wo), dtype=np.float32)
    source = np.repeat(x, per, axis=1) if per > 1 else x
    for i in range(kh):
        for j in range(kw):
            patch = source[
                :, :, i * dh : i * dh + (ho - 1) * sh + 1 : sh, j * dw : j * dw + (wo - 1) * sw + 1 : sw
            ]
            out += patch * w[:, 0, i, j][None, :, None, None]
    return out


@op()
def conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    x, weight, strides, dilations, pad, groups, was_1d = _conv_args(
        x, weight, strides, dilations, pad, groups
    )
    pads = _spatial_pads(pad_type, pad, x.shape[2:], weight.shape[2:], strides, dilations)
    if any(p for pair in pads for p in pair):
        x = np.pad(x, [(0, 0), (0, 0)] + pads)
    c_in = x.shape[1]
    if groups == c_in and weight.shape[1] == 1 and groups > 1:
        out = _conv2d_depthwise(x, weight, strides, dilations)
    elif groups == 1:
        out = _conv2d_dense(x, weight, strides, dilations)
    else:
        xs, ws = np.split(x, groups, axis=1), np.split(weight, groups, axis=0)
        out = np.concatenate([_conv2d_dense(a, b, strides, dilations) for a, b in zip(xs, ws)], axis=1)
    return _finish(out, bias, was_1d)


@op()
def conv_transpose(
    x,
    weight,
    bias=None,
    pad=None,
    output_shape=None,
    pad_type="valid",
    strides=None,
    dilations=None,
    groups=1,
):
    """weight (C_in, C_out/groups, kh, kw); each input pixel scatters a kh x kw block into the output."""
    x, weight, strides, dilations, pad, groups, was_1d = _conv_args(
        x, weight, strides, dilations, pad, groups
    )
    n, c_in, h, w = x.shape
    _, per_group, kh, kw = weight.shape
    (sh, sw), (dh, dw) = strides, dilations
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1, (w - 1) * sw + dw * (kw - 1) + 1
    full = np.zeros((n, per_group * groups, full_h, full_w), dtype=np.float32)
    xs, ws = np.split(x, groups, axis=1), np.split(weight, groups, axis=0)
    for g, (xg, wg) in enumerate(zip(xs, ws)):
        # (N, C_in_g, H, W) x (C_in_g, C_out_g, kh, kw) -> (N, C_out_g, kh, kw, H, W)
        blocks = np.tensordot(xg, wg, axes=([1], [0])).transpose(0, 3, 4, 5, 1, 2)
        target = full[:, g * per_group : (g + 1) * per_group]
        for i in range(kh):
            for j in range(kw):
                target[
                    :, :, i * dh : i * dh + (h - 1) * sh + 1 : sh, j * dw : j * dw + (w - 1) * sw + 1 : sw
                ] += blocks[:, :, i, j]
    if output_shape is not None:
        out_h, out_w = ints(output_shape)[-2:]
        if pad_type == "same":
            top, left = (full_h - out_h) // 2, (full_w - out_w) // 2
        else:
            top, left = (pad[0], pad[2]) if pad is not None else (0, 0)
        out = full[:, :, top : top + out_h, left : left + out_w]
    elif pad_type == "custom" and pad is not None:
        out = full[:, :, pad[0] : full_h - pad[1], pad[2] : full_w - pad[3]]
    elif pad_type == "same":
        out_h, out_w = h * sh, w * sw
        top, left = (full_h - out_h) // 2, (full_w - out_w) // 2
        out = full[:, :, top : top + out_h, left : left + out_w]
    else:
        out = full
    return _finish(out, bias, was_1d)
