#!/usr/bin/env python3
"""Generate the positional-embedding resize fixture used by the Rust tests (method.md §1.2).

Usage (needs torch, timm and safetensors, e.g. in a venv outside the repo):

    python tools/make_pos_embed_fixtures.py      # (re)writes tests/fixtures/pos_embed_resize.safetensors

A seeded random grid `grid [14, 14, D]` is resized to several smaller, larger and mixed grids with
non-integer ratios by
  bicubic.<h>x<w>            F.interpolate(mode="bicubic", align_corners=False)      (MAE / data2vec 2.0 /
                             MIM-Refiner reference code), computed in float64
  bicubic-antialias.<h>x<w>  F.interpolate(mode="bicubic", antialias=True, align_corners=False), float64
  timm.<h>x<w>               timm.layers.resample_abs_pos_embed with its defaults on `[1, 1+N, D]` with a
                             CLS row (stripped again), i.e. what timm does for another image size (float32)
All outputs are stored as float32 `[h, w, D]`.

Before writing, the script checks the closed-form 1-D weights that src/model/pos_embed.rs implements against
PyTorch for every input length 2..29 and output length 1..39 and prints the worst difference, so the
documented formulas stay tied to ATen's `upsample_bicubic2d` / `_upsample_bicubic2d_aa`.
"""

import math
import os

import torch
import torch.nn.functional as F

from make_fixtures import save_st  # reproducible file bytes

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "pos_embed_resize.safetensors")
SRC = (14, 14)
DIM = 16
# down ×2, down ×1.4, up ×1.14, up ×1.57, mixed (rows down, columns up), strong down, mixed the other way
SIZES = [(7, 7), (10, 10), (16, 16), (22, 22), (9, 20), (3, 5), (24, 6)]


def keys_cubic(x, a):
    x = abs(x)
    if x < 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def plain_matrix(n_in, n_out):
    """Plain bicubic: A = -0.75, source (o + 0.5)·scale - 0.5, four taps clamped to the border."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    scale = n_in / n_out
    for o in range(n_out):
        real = scale * (o + 0.5) - 0.5
        base = math.floor(real)
        t = real - base
        for k, x in enumerate([t + 1, t, 1 - t, 2 - t]):
            m[o, min(max(base - 1 + k, 0), n_in - 1)] += keys_cubic(x, -0.75)
    return m


def antialias_matrix(n_in, n_out):
    """antialias=True: a = -0.5, support 2·max(scale, 1), taps inside the grid only, normalised."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    support = 2 * stretch
    for o in range(n_out):
        center = scale * (o + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        for i in range(xmin, xmax):
            m[o, i] = keys_cubic((i - center + 0.5) / stretch, -0.5)
        m[o] /= m[o].sum()
    return m


def check_formulas():
    """Worst |formula - PyTorch| over many sizes, both conventions (2-D inputs, float64)."""
    g = torch.Generator().manual_seed(7)
    worst = 0.0
    for n_in in range(2, 30):
        for n_out in range(1, 40):
            x = torch.randn(1, 2, n_in, 6, generator=g, dtype=torch.float64)
            for antialias, fn in ((False, plain_matrix), (True, antialias_matrix)):
                y = F.interpolate(x, size=(n_out, 9), mode="bicubic", align_corners=False, antialias=antialias)
                z = torch.einsum("oi,bcij,pj->bcop", fn(n_in, n_out), x, fn(6, 9))
                worst = max(worst, (y - z).abs().max().item())
    print(f"closed-form weights vs PyTorch (both conventions): max |diff| = {worst:.3e}")
    assert worst < 1e-12, worst


def timm_resize(grid, size):
    from timm.layers import resample_abs_pos_embed
    h, w, d = grid.shape
    cls_row = torch.randn(1, 1, d, generator=torch.Generator().manual_seed(1))
    flat = torch.cat([cls_row, grid.reshape(1, h * w, d)], dim=1)
    out = resample_abs_pos_embed(flat, new_size=list(size), old_size=[h, w], num_prefix_tokens=1)
    assert torch.equal(out[:, :1], cls_row), "timm changed the CLS row"
    return out[0, 1:].reshape(size[0], size[1], d)


def main():
    check_formulas()
    g = torch.Generator().manual_seed(12)
    grid = torch.randn(*SRC, DIM, generator=g)  # float32, like a checkpoint's pos_embed
    chw = grid.double().permute(2, 0, 1).unsqueeze(0)
    out = {"grid": grid.contiguous()}
    for h, w in SIZES:
        for name, antialias in (("bicubic", False), ("bicubic-antialias", True)):
            y = F.interpolate(chw, size=(h, w), mode="bicubic", align_corners=False, antialias=antialias)
            out[f"{name}.{h}x{w}"] = y[0].permute(1, 2, 0).float().contiguous()
        t = timm_resize(grid, (h, w)).contiguous()
        gap = (t.double() - out[f"bicubic-antialias.{h}x{w}"].double()).abs().max().item()
        plain_gap = (out[f"bicubic.{h}x{w}"] - out[f"bicubic-antialias.{h}x{w}"]).abs().max().item()
        print(f"  {SRC} -> ({h}, {w}): timm vs antialias {gap:.1e}, plain vs antialias {plain_gap:.1e}")
        assert gap < 1e-5, "timm's default is not F.interpolate(antialias=True)"
        out[f"timm.{h}x{w}"] = t
    save_st(out, OUT, metadata={"source": "tools/make_pos_embed_fixtures.py"})
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes, {len(out)} tensors)")


if __name__ == "__main__":
    main()
