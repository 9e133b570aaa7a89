#!/usr/bin/env python3
"""CPU throughput baseline for PyTorch/timm ViTs (comparison point for the Rust forward pass).

Usage (torch + timm installed):  python tools/bench_torch_forward.py [--min-seconds 10] [--min-iters 5]

Models (random init, num_classes=0, fp32, torch.inference_mode for forward):
  vit_small_patch16_224 at 224 px, batch 8
  ViT-Ti/4 (embed 192, depth 12, heads 3) at 32 px, batch 64
For each: 2 warm-up iterations, then at least --min-iters iterations and --min-seconds seconds.
Reports forward img/s and forward+backward img/s (loss = sum of forward_features outputs).
"""

import argparse
import os
import time

import torch
import timm
import timm.models.vision_transformer as vt


def timed(fn, batch, min_iters, min_seconds):
    for _ in range(2):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if n >= min_iters and dt >= min_seconds:
            break
    return n * batch / dt, n, dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-seconds", type=float, default=10.0)
    ap.add_argument("--min-iters", type=int, default=5)
    args = ap.parse_args()

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, timm {timm.__version__}, threads {torch.get_num_threads()} "
          f"(os.cpu_count() = {threads})")

    configs = [
        ("vit_small_patch16_224 @224 bs8", lambda: timm.create_model("vit_small_patch16_224", pretrained=False,
                                                                      num_classes=0), 224, 8),
        ("ViT-Ti/4 @32 bs64", lambda: vt.VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=12,
                                                           num_heads=3, num_classes=0), 32, 64),
    ]
    for name, ctor, res, bs in configs:
        model = ctor().float()
        x = torch.randn(bs, 3, res, res)

        model.eval()

        def fwd():
            with torch.inference_mode():
                model.forward_features(x)

        ips, n, dt = timed(fwd, bs, args.min_iters, args.min_seconds)
        print(f"{name}: forward          {ips:8.1f} img/s  ({n} iters, {dt:.1f} s)", flush=True)

        model.train()  # drop-path/dropout are 0 by default, so train() only enables autograd bookkeeping

        def fwd_bwd():
            model.zero_grad(set_to_none=True)
            model.forward_features(x).sum().backward()

        ips, n, dt = timed(fwd_bwd, bs, args.min_iters, args.min_seconds)
        print(f"{name}: forward+backward {ips:8.1f} img/s  ({n} iters, {dt:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
