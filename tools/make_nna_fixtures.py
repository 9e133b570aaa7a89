#!/usr/bin/env python3
"""Reference fixture for the ID heads and the Nearest Neighbor Alignment (NNA) loss.

Usage (needs torch, safetensors and numpy, e.g. in a venv outside the repo):

    python tools/make_nna_fixtures.py      # (re)writes tests/fixtures/nna_heads.safetensors

Independent PyTorch implementation of docs/method.md §2 (heads, queue) and §3 (NNA loss), written
from the formulas. Everything runs in float64 and is stored as float32; integer quantities (indices,
labels, ages, pointers) are stored as float32 too. Scalars are stored with shape [1]. The generator is
seeded with 0 and the file is byte-identical on rerun (the script checks this by hashing).
The script also prints a closed-form sanity check (tau = 1, B = 2, identical unit vectors: loss = log 2).

Set-up
------
B = 4 samples, 2 global + L = 3 local views = 5 views. Two heads: h0 (tau = 0.2) and h1 (tau = 0.3).
Head input width D = 16; projector 16 -> 32 -> 32 -> 8, predictor 8 -> 24 -> 8 (all Linear without
bias, each followed by BatchNorm1d; GELU = exact erf GELU after every BN except the last of each MLP).
BatchNorm in training mode: batch statistics over all 5B rows (biased variance for normalising,
eps 1e-5), running stats updated with momentum 0.1 and the unbiased variance (PyTorch semantics).
Rows of every [5B, .] tensor are view-major: rows 0..B = g1, B..2B = g2, then l1, l2, l3.

NN lookup per global view v (no grad): sim = n(z_v) n(Q)^T, entries whose queue idx equals the
sample's dataset index get sim = -1, top-1 (k = 1). Samples 0 and 2 have a near copy of their own g1
projector output in the queue under their own index, so for them the best unmasked entry would be
the masked one (masking matters). The top-1/top-2 margin is asserted to be > 1e-3.

Loss for (anchor view v, prediction view u), p^ = n(p_u), z^ = n(stopgrad(z_v)), q = n(Q[pick_v]):
  logits[i, j] = z^_i . p^_j / tau (j != i),  logits[i, i] = q_i . p^_i / tau,
  l = cross-entropy(logits, target i), mean over i.
Terms: (g1, g2), (g2, g1) and (v, u) for v in {g1, g2}, u in {l1, l2, l3}; per head = sum / 8;
total = sum over heads.

Tensor names (H in {h0, h1})
----------------------------
Inputs / initial state:
  H.x                                      [20, 16]  head input features (view-major)
  H.projector.{0,1}.0.weight               [32, 16] / [32, 32]
  H.projector.2.0.weight                   [8, 32]
  H.projector.{0,1,2}.1.{weight,bias,running_mean,running_var}   [32] / [32] / [8]
  H.predictor.0.0.weight                   [24, 8]
  H.predictor.1.0.weight                   [8, 24]
  H.predictor.{0,1}.1.{weight,bias,running_mean,running_var}     [24] / [8]
  H.queue.x [16, 8], H.queue.idx [16], H.queue.label [16], H.queue.age [16], H.queue.ptr [1] (= 14)
  batch.idx [4] (= 3, 17, 42, 8), batch.label [4]
Outputs:
  H.after.projector.{0,1,2}.1.{running_mean,running_var}, H.after.predictor.{0,1}.1.{running_mean,running_var}
                                           BN running stats after the single training forward
  H.z [20, 8], H.p [20, 8]                 projector / predictor outputs (un-normalised)
  H.nn_index [2, 4]                        picked queue slots for g1 (row 0) and g2 (row 1)
  H.loss [1], H.loss_quirk [1], H.loss_allswap [1], loss [1] (= h0.loss + h1.loss)
      loss_quirk: reference local-loop quirk (prediction views {g1, g2, l1} instead of {l1, l2, l3},
                  same anchors, same / 8); loss_allswap: NNCLR, logits[i, j] = q_i . p^_j / tau for all j.
  H.nn_similarity [1]   mean over (global view, sample) of cos(z_v,i, Q[pick])
  H.nn_accuracy [1]     fraction of (global view, sample) whose NN label equals the sample's label
  H.global_alignment [1], H.local_alignment [1]
                        mean over the 2 global / 6 local terms of the batch-mean softmax probability
                        of the positive (diagonal), intended indexing
  H.after.queue.{x,idx,label,age} [16, ...], H.after.queue.ptr [1]
      enqueue z of g1 (after the final BN, not normalised) at slots ptr, ptr+1, ... mod 16 (wraps:
      14, 15, 0, 1), ptr <- (ptr + B) mod 16. Ages follow the reference queue: new slots are set to 0
      and then every age (new ones included) is increased by B, so new slots end at age B = 4.
  grad.H.<every head weight name above except running stats>   d loss / d weight (total, intended)
  grad.H.x [20, 16]                                            d loss / d x
"""

import hashlib
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "nna_heads.safetensors")

B, NG, NL = 4, 2, 3
NV = NG + NL
D_IN, PROJ_H, OUT_D, PRED_H = 16, 32, 8, 24
QSIZE, QPTR = 16, 14
EPS, MOM = 1e-5, 0.1
BATCH_IDX = [3, 17, 42, 8]
BATCH_LABEL = [1, 0, 2, 1]
TAUS = {"h0": 0.2, "h1": 0.3}
DT = torch.float64

# (module prefix, in, out, gelu after BN)
LAYERS = [
    ("projector.0", D_IN, PROJ_H, True),
    ("projector.1", PROJ_H, PROJ_H, True),
    ("projector.2", PROJ_H, OUT_D, False),
    ("predictor.0", OUT_D, PRED_H, True),
    ("predictor.1", PRED_H, OUT_D, False),
]


def n(t):
    return t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def make_head(g):
    p = {}
    for name, fin, fout, _ in LAYERS:
        bound = math.sqrt(6.0 / (fin + fout))  # Xavier-uniform
        p[f"{name}.0.weight"] = (torch.rand(fout, fin, generator=g, dtype=DT) * 2 - 1) * bound
        p[f"{name}.1.weight"] = 1 + 0.1 * torch.randn(fout, generator=g, dtype=DT)
        p[f"{name}.1.bias"] = 0.1 * torch.randn(fout, generator=g, dtype=DT)
        p[f"{name}.1.running_mean"] = torch.zeros(fout, dtype=DT)
        p[f"{name}.1.running_var"] = torch.ones(fout, dtype=DT)
    return p


def bn_train(x, w, b, rm, rv):
    mean = x.mean(0)
    var_b = ((x - mean) ** 2).mean(0)
    var_u = var_b * x.shape[0] / (x.shape[0] - 1)
    y = (x - mean) / torch.sqrt(var_b + EPS) * w + b
    return y, (1 - MOM) * rm + MOM * mean.detach(), (1 - MOM) * rv + MOM * var_u.detach()


def head_forward(p, x):
    """Returns z (projector output), p (predictor output), new running stats."""
    stats = {}
    h = x
    z = None
    for name, _, _, act in LAYERS:
        if name == "predictor.0":
            z = h
        h = h @ p[f"{name}.0.weight"].T
        h, rm, rv = bn_train(h, p[f"{name}.1.weight"], p[f"{name}.1.bias"],
                             p[f"{name}.1.running_mean"], p[f"{name}.1.running_var"])
        stats[f"{name}.1.running_mean"], stats[f"{name}.1.running_var"] = rm, rv
        if act:
            h = F.gelu(h)  # exact erf GELU
    return z, h, stats


def views(t):
    return [t[k * B:(k + 1) * B] for k in range(NV)]


def nn_lookup(zg, qx, qidx, bidx):
    """zg: [B, d] one global view. Returns picked slots [B], top1-top2 margin, unmasked argmax."""
    sim = n(zg) @ n(qx).T
    raw_best = sim.argmax(1)
    sim = sim.masked_fill(bidx[:, None] == qidx[None, :], -1.0)
    top = sim.topk(2, dim=1)
    return top.indices[:, 0], (top.values[:, 0] - top.values[:, 1]).min().item(), raw_best


def pair_loss(zhat, q, phat, tau, allswap=False):
    """zhat, q: [B, d] normalised anchor / NN of view v; phat: [B, d] normalised predictions of view u."""
    eye = torch.eye(zhat.shape[0], dtype=torch.bool)
    pos = (q @ phat.T) / tau
    neg = pos if allswap else (zhat @ phat.T) / tau
    logits = torch.where(eye, pos, neg)
    target = torch.arange(zhat.shape[0])
    loss = F.cross_entropy(logits, target)
    align = logits.softmax(-1).diagonal().mean()
    return loss, align


def nna_loss(zhat, q, phat, tau, local_preds, allswap=False):
    """zhat, q: lists over global views; phat: list over all views; local_preds: view ids for the local loop."""
    glob, loc = [], []
    for v in range(NG):
        for u in range(NG):
            if u != v:
                glob.append(pair_loss(zhat[v], q[v], phat[u], tau, allswap))
    for v in range(NG):
        for u in local_preds:
            loc.append(pair_loss(zhat[v], q[v], phat[u], tau, allswap))
    terms = glob + loc
    loss = sum(t[0] for t in terms) / len(terms)
    galign = sum(t[1] for t in glob) / len(glob)
    lalign = sum(t[1] for t in loc) / len(loc)
    return loss, galign, lalign


def build(g):
    out = {}
    bidx = torch.tensor(BATCH_IDX, dtype=DT)
    blab = torch.tensor(BATCH_LABEL, dtype=DT)
    out["batch.idx"], out["batch.label"] = bidx, blab
    heads = {}
    for h, tau in TAUS.items():
        x = torch.randn(NV * B, D_IN, generator=g, dtype=DT)
        p = make_head(g)
        # queue: random entries, random foreign indices / labels / ages
        qx = torch.randn(QSIZE, OUT_D, generator=g, dtype=DT)
        qidx = torch.randint(100, 1000, (QSIZE,), generator=g).to(DT)
        qlab = torch.randint(0, 3, (QSIZE,), generator=g).to(DT)
        qage = torch.randint(0, 200, (QSIZE,), generator=g).to(DT)
        # near copies of own g1 projector outputs under the sample's own index (samples 0 and 2)
        with torch.no_grad():
            z0, _, _ = head_forward(p, x)
        for sample, slot in ((0, 5), (2, 9)):
            qx[slot] = z0[sample] + 0.01 * torch.randn(OUT_D, generator=g, dtype=DT)
            qidx[slot] = bidx[sample]
        qidx[11] = bidx[1]  # same index as sample 1, but a random vector: masking is a no-op there
        heads[h] = (tau, x, p, qx, qidx, qlab, qage)
        out[f"{h}.x"] = x
        for k, v in p.items():
            out[f"{h}.{k}"] = v
        out[f"{h}.queue.x"], out[f"{h}.queue.idx"] = qx, qidx
        out[f"{h}.queue.label"], out[f"{h}.queue.age"] = qlab, qage
        out[f"{h}.queue.ptr"] = torch.tensor([QPTR], dtype=DT)

    total = 0.0
    leaves = {}
    for h, (tau, x, p, qx, qidx, qlab, qage) in heads.items():
        x = x.clone().requires_grad_(True)
        pl = {k: (v.clone().requires_grad_(True) if "running" not in k else v) for k, v in p.items()}
        leaves[h] = (x, pl)
        z, pred, stats = head_forward(pl, x)  # the single training forward of this head
        for k, v in stats.items():
            out[f"{h}.after.{k}"] = v
        out[f"{h}.z"], out[f"{h}.p"] = z.detach(), pred.detach()
        zv, pv = views(z.detach()), views(pred)
        picks, qs, sims, accs = [], [], [], []
        for v in range(NG):
            pick, margin, raw_best = nn_lookup(zv[v], qx, qidx, bidx)
            assert margin > 1e-3, (h, v, margin)
            if v == 0:
                assert raw_best[0].item() == 5 and raw_best[2].item() == 9, raw_best
                assert pick[0].item() != 5 and pick[2].item() != 9
            picks.append(pick)
            qs.append(n(qx[pick]))
            sims.append(F.cosine_similarity(zv[v], qx[pick], dim=-1))
            accs.append((qlab[pick] == blab).to(DT))
        out[f"{h}.nn_index"] = torch.stack(picks).to(DT)
        out[f"{h}.nn_similarity"] = torch.cat(sims).mean().reshape(1)
        out[f"{h}.nn_accuracy"] = torch.cat(accs).mean().reshape(1)
        zhat = [n(zv[v]) for v in range(NG)]
        phat = [n(t) for t in pv]
        loss, galign, lalign = nna_loss(zhat, qs, phat, tau, range(NG, NV))
        out[f"{h}.loss"] = loss.detach().reshape(1)
        out[f"{h}.global_alignment"] = galign.detach().reshape(1)
        out[f"{h}.local_alignment"] = lalign.detach().reshape(1)
        with torch.no_grad():
            out[f"{h}.loss_quirk"] = nna_loss(zhat, qs, phat, tau, range(0, NL))[0].reshape(1)
            out[f"{h}.loss_allswap"] = nna_loss(zhat, qs, phat, tau, range(NG, NV), allswap=True)[0].reshape(1)
        total = total + loss
        # queue update: enqueue g1 projector output (not normalised)
        nqx, nqidx, nqlab, nqage = qx.clone(), qidx.clone(), qlab.clone(), qage.clone()
        slots = [(QPTR + i) % QSIZE for i in range(B)]
        for i, s in enumerate(slots):
            nqx[s], nqidx[s], nqlab[s], nqage[s] = zv[0][i], bidx[i], blab[i], 0.0
        nqage += B
        out[f"{h}.after.queue.x"], out[f"{h}.after.queue.idx"] = nqx, nqidx
        out[f"{h}.after.queue.label"], out[f"{h}.after.queue.age"] = nqlab, nqage
        out[f"{h}.after.queue.ptr"] = torch.tensor([(QPTR + B) % QSIZE], dtype=DT)
    out["loss"] = total.detach().reshape(1)
    total.backward()
    for h, (x, pl) in leaves.items():
        out[f"grad.{h}.x"] = x.grad
        for k, v in pl.items():
            if "running" not in k:
                out[f"grad.{h}.{k}"] = v.grad
    return out, heads


def cross_check_nn_modules(out, heads):
    """Cross-check the functional BN/MLP against torch.nn modules with the reference nesting/key names."""
    for h, (tau, x, p, *_rest) in heads.items():
        def mlp(dims):
            layers = []
            for i in range(len(dims) - 1):
                blk = [torch.nn.Linear(dims[i], dims[i + 1], bias=False), torch.nn.BatchNorm1d(dims[i + 1])]
                if i < len(dims) - 2:
                    blk.append(torch.nn.GELU())
                layers.append(torch.nn.Sequential(*blk))
            return torch.nn.Sequential(*layers)
        m = torch.nn.ModuleDict({"projector": mlp([D_IN, PROJ_H, PROJ_H, OUT_D]),
                                 "predictor": mlp([OUT_D, PRED_H, OUT_D])}).to(DT).train()
        sd = {k: v for k, v in p.items()}
        missing, unexpected = m.load_state_dict(sd, strict=False)
        assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
        with torch.no_grad():
            z = m["projector"](x)
            pr = m["predictor"](z)
        assert torch.allclose(z, out[f"{h}.z"], atol=1e-12) and torch.allclose(pr, out[f"{h}.p"], atol=1e-12)
        for k, v in m.state_dict().items():
            if "running" in k:
                assert torch.allclose(v, out[f"{h}.after.{k}"], atol=1e-12), k


def closed_form_check():
    u = n(torch.ones(2, 3, dtype=DT))
    zhat, q, phat = [u, u], [u, u], [u] * NV
    loss = nna_loss(zhat, q, phat, 1.0, range(NG, NV))[0].item()
    print(f"closed-form check (tau=1, B=2, identical unit vectors): loss = {loss:.12f}, "
          f"log 2 = {math.log(2):.12f}")
    assert abs(loss - math.log(2)) < 1e-12


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    out, heads = build(g)
    cross_check_nn_modules(out, heads)
    closed_form_check()
    tensors = {k: out[k].detach().to(torch.float32).contiguous() for k in sorted(out)}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT)
    with open(OUT, "rb") as f:
        data = f.read()
    print(f"wrote {os.path.normpath(OUT)}: {len(tensors)} tensors, {len(data)} bytes, "
          f"sha256 {hashlib.sha256(data).hexdigest()}")
    for k in ("h0.loss", "h1.loss", "loss", "h0.loss_quirk", "h0.loss_allswap", "h1.loss_quirk",
              "h1.loss_allswap", "h0.nn_similarity", "h0.nn_accuracy", "h0.global_alignment",
              "h0.local_alignment", "h1.nn_similarity", "h1.nn_accuracy"):
        print(f"  {k} = {out[k].item():.9f}")
    print("  h0.nn_index =", out["h0.nn_index"].tolist(), " h1.nn_index =", out["h1.nn_index"].tolist())


if __name__ == "__main__":
    main()
