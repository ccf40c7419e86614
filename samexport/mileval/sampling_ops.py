"""Resampling ops: bilinear `resample` (grid sampling), `upsample_bilinear`, `upsample_nearest_neighbor`
and `max_pool`."""

from __future__ import annotations

import numpy as np

from .registry import ints, op


def _gather_bilinear(x: np.ndarray, ys: np.ndarray, xs: np.ndarray, fill: float) -> np.ndarray:
    """x (N, C, H, W), pixel positions ys, xs (N, Ho, Wo) -> (N, C, Ho, Wo); corners outside give `fill`."""
    n, c, h, w = x.shape
    y0, x0 = np.floor(ys), np.floor(xs)
    out = np.zeros((n, c) + ys.shape[1:], dtype=np.float32)
    flat = x.reshape(n, c, h * w)
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y0 + dy, x0 + dx
            weight = (1.0 - np.abs(ys - yy)) * (1.0 - np.abs(xs - xx))
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            index = (np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1)).astype(np.int64)
            values = np.take_along_axis(flat, index.reshape(n, 1, -1).repeat(c, axis=1), axis=2)
            values = np.where(inside.reshape(n, 1, -1), values, np.float32(fill))
            out += (values * weight.reshape(n, 1, -1)).reshape(out.shape).astype(np.float32)
    return out


@op()
def resample(
    x,
    coordinates,
    sampling_mode="bilinear",
    padding_mode="constant",
    padding_value=0.0,
    coordinates_mode="normalized_minus_one_to_one",
    align_corners=False,
):
    """x (N, C, H, W) sampled at coordinates (N, Ho, Wo, 2) = (x, y): bilinear, constant padding."""
    if sampling_mode != "bilinear" or padding_mode != "constant":
        raise NotImplementedError(f"resample {sampling_mode}/{padding_mode}: only bilinear/constant")
    x = np.asarray(x, dtype=np.float32)
    coords = np.asarray(coordinates, dtype=np.float32)
    h, w = x.shape[-2:]
    gx, gy = coords[..., 0], coords[..., 1]
    if coordinates_mode == "unnormalized":
        px, py = gx, gy
    elif coordinates_mode == "normalized_minus_one_to_one":
        if align_corners:
            px, py = (gx + 1) * ((w - 1) / 2), (gy + 1) * ((h - 1) / 2)
        else:
            px, py = ((gx + 1) * w - 1) / 2, ((gy + 1) * h - 1) / 2
    elif coordinates_mode == "normalized_zero_to_one":
        px, py = (gx * (w - 1), gy * (h - 1)) if align_corners else (gx * w - 0.5, gy * h - 0.5)
    else:
        raise NotImplementedError(f"resample coordinates_mode {coordinates_mode}")
    return _gather_bilinear(x, py, px, float(padding_value))


def _source_positions(out_size: int, in_size: int, scale: float, align_corners: bool) -> np.ndarray:
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners:
        return dst * ((in_size - 1) / max(out_size - 1, 1))
    return np.maximum((dst + 0.5) / scale - 0.5, 0.0)


@op()
def upsample_bilinear(
    x, scale_factor_height=1.0, scale_factor_width=1.0, align_corners=False, half_pixel_centers=None
):
    """(N, C, H, W) -> (N, C, floor(H * s_h), floor(W * s_w)); half-pixel centres unless align_corners
    (PyTorch's align_corners=False: source positions below 0 are clamped to 0)."""
    x = np.asarray(x, dtype=np.float32)
    h, w = x.shape[-2:]
    sh, sw = float(scale_factor_height), float(scale_factor_width)
    out_h, out_w = int(np.floor(h * sh)), int(np.floor(w * sw))
    ys = _source_positions(out_h, h, sh, bool(align_corners))
    xs = _source_positions(out_w, w, sw, bool(align_corners))

    def lerp(a: np.ndarray, pos: np.ndarray, axis: int, size: int) -> np.ndarray:
        low = np.minimum(np.floor(pos).astype(np.int64), size - 1)
        high = np.minimum(low + 1, size - 1)
        frac = (pos - low).astype(np.float32)
        shape = [1] * a.ndim
        shape[axis] = -1
        frac = frac.reshape(shape)
        return np.take(a, low, axis=axis) * (1 - frac) + np.take(a, high, axis=axis) * frac

    return lerp(lerp(x, ys, 2, h), xs, 3, w).astype(np.float32)


@op(moves="x")
def upsample_nearest_neighbor(x, scale_factor_height=1, scale_factor_width=1):
    """(N, C, H, W) -> (N, C, floor(H * s_h), floor(W * s_w)): output pixel i copies input floor(i / s)
    (PyTorch's `nearest`)."""
    x = np.asarray(x)
    h, w = x.shape[-2:]
    sh, sw = float(scale_factor_height), float(scale_factor_width)
    rows = np.minimum(np.floor(np.arange(int(np.floor(h * sh))) / sh).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(np.arange(int(np.floor(w * sw))) / sw).astype(np.int64), w - 1)
    return x[..., rows, :][..., cols]


@op()
def max_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False):
    """(N, C, H, W) max over windows; padding counts as -inf."""
    x = np.asarray(x)
    kh, kw = ints(kernel_sizes)
    sh, sw = ints(strides) if strides is not None else (1, 1)
    h, w = x.shape[-2:]
    if pad_type == "custom":
        top, bottom, left, right = ints(pad)
    elif pad_type == "same":
        out_h, out_w = -(-h // sh), -(-w // sw)
        ph, pw = max((out_h - 1) * sh + kh - h, 0), max((out_w - 1) * sw + kw - w, 0)
        top, bottom, left, right = ph // 2, ph - ph // 2, pw // 2, pw - pw // 2
    else:
        top = bottom = left = right = 0
    rounding = np.ceil if ceil_mode else np.floor
    out_h = int(rounding((h + top + bottom - kh) / sh)) + 1
    out_w = int(rounding((w + left + right - kw) / sw)) + 1
    extra_h = max((out_h - 1) * sh + kh - (h + top + bottom), 0)
    extra_w = max((out_w - 1) * sw + kw - (w + left + right), 0)
    padded = np.pad(
        x, [(0, 0), (0, 0), (top, bottom + extra_h), (left, right + extra_w)], constant_values=-np.inf
    )
    out = np.full(x.shape[:2] + (out_h, out_w), -np.inf, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out = np.maximum(
                out, padded[:, :, i : i + (out_h - 1) * sh + 1 : sh, j : j + (out_w - 1) * sw + 1 : sw]
            )
    return out
