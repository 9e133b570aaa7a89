#!/usr/bin/env python3
"""The bundled demo model read by timm: tests/fixtures/demo_timm_features.safetensors.

Usage (needs torch, timm, safetensors, numpy, e.g. the repo's .venv):

    python tools/make_demo_timm_fixture.py

It builds timm's VisionTransformer with the demo model's architecture (28 px, patch 4, width 64,
8 blocks, 4 heads, CLS token, no classifier), loads assets/demo_mae.safetensors — the encoder
`mimr pretrain` exported — with strict=True (every key and shape must match timm's), and embeds
the first 16 test images of assets/fashion-mnist (grey → 3 channels, the demo's normalisation).
It stores `images` [16, 3, 28, 28] and the CLS token of every block's raw output (`block.<i>`) and
of the final-norm output (`final`), as float32. tests/demo.rs checks that `mimr embed` on the same
tensor gives the same features, i.e. that pretrain → export → timm load round-trips.
"""

import gzip
import os

import numpy as np
import timm
import torch

from make_fixtures import save_st

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MEAN, STD = 0.2860, 0.3530
N = 16


def test_images():
    path = os.path.join(ROOT, "assets", "fashion-mnist", "t10k-images-idx3-ubyte.gz")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    pixels = np.frombuffer(raw[16:16 + N * 784], dtype=np.uint8).reshape(N, 1, 28, 28)
    x = (pixels.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.repeat(x, 3, axis=1).copy())


def main():
    from safetensors.torch import load_file

    sd = load_file(os.path.join(ROOT, "assets", "demo_mae.safetensors"))
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=28, patch_size=4, in_chans=3, embed_dim=64, depth=8, num_heads=4,
        mlp_ratio=4.0, qkv_bias=True, class_token=True, num_classes=0, global_pool="token")
    model.load_state_dict(sd, strict=True)
    model.eval()
    x = test_images()
    out = {"images": x}
    with torch.no_grad():
        h = model.patch_embed(x)
        h = model._pos_embed(h)
        h = model.norm_pre(h)
        for i, blk in enumerate(model.blocks):
            h = blk(h)
            out[f"block.{i}"] = h[:, 0].clone()
        out["final"] = model.norm(h)[:, 0].clone()
        ref = model.forward_features(x)[:, 0]
    assert torch.allclose(ref, out["final"]), "manual pass differs from forward_features"
    path = os.path.join(ROOT, "tests", "fixtures", "demo_timm_features.safetensors")
    save_st({k: v.contiguous().float() for k, v in out.items()}, path,
            {"source": "tools/make_demo_timm_fixture.py", "model": "assets/demo_mae.safetensors"})
    print("wrote", path, {k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
