#!/usr/bin/env python3
"""CPU throughput baseline for one MIM-Refiner stage-3 training step in PyTorch (comparison point for
the Rust trainer).

Usage (torch + timm installed):  python tools/bench_torch_refine.py [--min-seconds 10] [--batch 64]

Set-up (fp32, torch.set_num_threads(os.cpu_count()), random init):
  encoder  pre-norm ViT-Ti/4 = timm VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=12,
           num_heads=3, num_classes=0); own token embedding: patch tokens + learned pos-embed (bicubic
           resize 8x8 -> 4x4 for the local views, align_corners=False, no antialias), CLS token prepended
           (with its pos row), then the timm blocks and final norm.
  views    2 global views at 32 px and 4 local views at 16 px per sample; the encoder runs once on the
           2B globals and once on the 4B locals, features are concatenated view-major.
  heads    4 ID heads (docs/method.md §2, size `tiny`: projector D->1024->1024->128, predictor
           128->2048->128, bias-free Linear + BatchNorm1d over all 6B rows, exact GELU) on the CLS token of
           blocks 8, 9, 10 (raw block outputs, 0-indexed) and of the final-norm output; tau = 0.2.
  queue    65536 x 128 per head, same-index masking, top-k 20 with a uniform random pick, enqueue of the
           g1 projector output (ring buffer), no grad.
  loss     NNA (method.md §3, intended indexing): 2 global + 2*4 local terms, / 10 per head, sum over heads.
  optim    AdamW(lr 1e-4, betas (0.9, 0.95), weight_decay 0.05) over all encoder and head parameters,
           one step per iteration (zero_grad, forward, backward, step). No EMA, no LR schedule.
Timing: 2 warm-up iterations, then iterations until >= --min-seconds. Reports img/s (B images per step)
and peak RSS (resource.getrusage(RUSAGE_SELF).ru_maxrss).
"""

import argparse
import os
import resource
import time

import torch
import torch.nn.functional as F
import timm
import timm.models.vision_transformer as vt

TAPS = (8, 9, 10)  # raw block outputs; plus the final-norm output
NUM_LOCAL = 4
QSIZE, OUT_D, PROJ_H, PRED_H, TOPK, TAU = 65536, 128, 1024, 2048, 20, 0.2


def mlp(dims):
    layers = []
    for i in range(len(dims) - 1):
        blk = [torch.nn.Linear(dims[i], dims[i + 1], bias=False), torch.nn.BatchNorm1d(dims[i + 1])]
        if i < len(dims) - 2:
            blk.append(torch.nn.GELU())
        layers.append(torch.nn.Sequential(*blk))
    for m in layers:
        torch.nn.init.xavier_uniform_(m[0].weight)
    return torch.nn.Sequential(*layers)


class Head(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.projector = mlp([dim, PROJ_H, PROJ_H, OUT_D])
        self.predictor = mlp([OUT_D, PRED_H, OUT_D])
        self.register_buffer("qx", torch.randn(QSIZE, OUT_D))
        self.register_buffer("qidx", -torch.ones(QSIZE, dtype=torch.long))
        self.ptr = 0

    @torch.no_grad()
    def lookup_and_enqueue(self, zg, idx, n_global):
        """zg: [n_global*B, d] detached global projector outputs. Returns normalised NNs [n_global*B, d]."""
        sim = F.normalize(zg, dim=-1) @ F.normalize(self.qx, dim=-1).T
        sim.masked_fill_((idx[:, None] == self.qidx[None, :]).repeat(n_global, 1), -1.0)
        top = sim.topk(TOPK, dim=1).indices
        pick = top.gather(1, torch.randint(TOPK, (len(top), 1))).squeeze(1)
        nn = F.normalize(self.qx[pick], dim=-1)
        b = len(idx)
        slots = (self.ptr + torch.arange(b)) % QSIZE
        self.qx[slots] = zg[:b]
        self.qidx[slots] = idx
        self.ptr = (self.ptr + b) % QSIZE
        return nn


def pair_loss(zhat, q, phat):
    b = len(zhat)
    eye = torch.eye(b, dtype=torch.bool)
    logits = torch.where(eye, q @ phat.T, zhat @ phat.T) / TAU
    return F.cross_entropy(logits, torch.arange(b))


def nna_loss(head, feats, idx, b, n_views):
    z = head.projector(feats)
    p = F.normalize(head.predictor(z), dim=-1)
    zg = z[:2 * b].detach()
    q = head.lookup_and_enqueue(zg, idx, 2)
    zhat = F.normalize(zg, dim=-1)
    zv = [zhat[:b], zhat[b:]]
    qv = [q[:b], q[b:]]
    pv = [p[k * b:(k + 1) * b] for k in range(n_views)]
    terms = [pair_loss(zv[0], qv[0], pv[1]), pair_loss(zv[1], qv[1], pv[0])]
    for v in range(2):
        for u in range(2, n_views):
            terms.append(pair_loss(zv[v], qv[v], pv[u]))
    return sum(terms) / len(terms)


def encode(model, x):
    """Returns the CLS token of blocks TAPS (raw) and of the final-norm output."""
    t = model.patch_embed.proj(x)  # [N, D, h, w]
    h, w = t.shape[-2:]
    pos = model.pos_embed[:, 1:]
    g = int(round(pos.shape[1] ** 0.5))
    if (h, w) != (g, g):
        pos = pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False, antialias=False)
        pos = pos.permute(0, 2, 3, 1).reshape(1, h * w, -1)
    t = t.flatten(2).transpose(1, 2) + pos
    cls = (model.cls_token + model.pos_embed[:, :1]).expand(len(t), -1, -1)
    t = torch.cat([cls, t], dim=1)
    outs = []
    for i, blk in enumerate(model.blocks):
        t = blk(t)
        if i in TAPS:
            outs.append(t[:, 0])
    outs.append(model.norm(t)[:, 0])
    return outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    threads = args.threads
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, timm {timm.__version__}, threads {torch.get_num_threads()} "
          f"(os.cpu_count() = {threads})", flush=True)

    b = args.batch
    model = vt.VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3,
                                 num_classes=0).float().train()
    heads = torch.nn.ModuleList([Head(192) for _ in range(len(TAPS) + 1)]).train()
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    n_views = 2 + NUM_LOCAL
    glob = torch.randn(2 * b, 3, 32, 32)
    loc = torch.randn(NUM_LOCAL * b, 3, 16, 16)
    step_no = [0]

    def step():
        idx = torch.arange(b) + step_no[0] * b
        step_no[0] += 1
        opt.zero_grad(set_to_none=True)
        fg, fl = encode(model, glob), encode(model, loc)
        loss = sum(nna_loss(hd, torch.cat([a, c]), idx, b, n_views) for hd, a, c in zip(heads, fg, fl))
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while True:
        loss = step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= args.min_seconds:
            break
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ViT-Ti/4 stage-3 step, batch {b} (2x32px + {NUM_LOCAL}x16px), 4 tiny heads, queue {QSIZE}x{OUT_D}: "
          f"{n * b / dt:.1f} img/s ({n} steps, {dt:.1f} s, {dt / n * 1000:.0f} ms/step), "
          f"peak RSS {rss_mib:.0f} MiB, last loss {loss:.4f}", flush=True)


if __name__ == "__main__":
    main()
