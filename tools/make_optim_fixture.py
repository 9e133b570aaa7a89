#!/usr/bin/env python3
"""Reference fixture for the refinement optimizer: AdamW, parameter groups, stage handoff and EMA.

Usage (needs torch and safetensors, e.g. in a venv outside the repo):

    python tools/make_optim_fixture.py      # (re)writes tests/fixtures/optim_adamw.safetensors

The parameters are those of a real mimr `Refiner` (docs/method.md §1, §2): the `debug` ViT preset
(patch 16, dim 16, depth 2, 2 attention heads, MLP 64, image 16 -> a 1x1 positional grid) plus two
`debug` ID heads (projector 16 -> 16 -> 16 -> 4, predictor 4 -> 32 -> 4, bias-free Linears, each
followed by BatchNorm1d). Names and shapes are mimr's Burn module paths (`encoder.patch_weight`,
`encoder.blocks.0.norm1.gamma`, `heads.1.predictor.0.linear.weight` [in, out], ...);
tests/optim_fixture.rs checks that they are exactly the trainable parameters of the real model.
The positional embedding and the BatchNorm running statistics are not trained and not stored.

The update itself is torch.optim.AdamW (betas (0.9, 0.95), eps 1e-8, docs/method.md §4.2), one
parameter group per parameter, in float64 on the float32-rounded inputs, so the reference does not
depend on mimr's formula. The groups are written here from the reference (method.md §4.2, §1.5,
the reference's layerwise_lr_decay_modifier) on the reference names (`patch_embed.proj.weight`,
`blocks.j.norm1.weight`, `projector.i.0.weight`, ...), to which mimr's Burn names are mapped first:
  weight decay 0 for every `.bias`, every parameter with ndim <= 1 and the CLS token; encoder
  matrices get encoder_weight_decay, head matrices head_weight_decay of the stage;
  LR scale (stage 3, encoder): gamma ** (L - layer_id) with L = depth + 1 and layer_id 0 for the
  stem (patch embed, CLS token), j + 1 for block j and L for the final norm; heads: 1.

Run (gradients are fixed random tensors, so the test does not depend on the loss):
  steps 0-2: stage 2, the encoder frozen (not in the optimizer); heads only. In step 1 head 1 has
             no gradient (`p.grad = None`: AdamW skips it, its own step count does not advance).
  steps 3-5: stage 3 with a fresh AdamW over encoder and heads (the reference starts stage 3 as a
             new run): all moments and step counts restart. In step 3 block 0 and head 1 have no
             gradient. After every stage-3 step: ema <- m * ema + (1 - m) * theta for every
             encoder parameter, the EMA starting at the (stage-2-unchanged) encoder.
  The LR of step s is metadata `lrs[s]` (already the scheduled value; the group scale multiplies it).

Tensors:
  w0.<path>            initial values of every trained parameter
  grad.<s>.<path>      gradient of step s (absent = no gradient in that step)
  w.<s>.<path>         every trained parameter after step s
  ema.<s>.<path>       every encoder parameter of the EMA after stage-3 step s (s = 3, 4, 5)
Metadata `hp` (JSON): lrs, stages, layer_decay, encoder_weight_decay, head_weight_decay_stage2,
  head_weight_decay_stage3, ema_momentum, depth.
The generator is seeded with 0; the file is byte-identical on rerun (the sha256 is printed).
"""

import hashlib
import json
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "optim_adamw.safetensors")

DIM, DEPTH, PATCH, MLP = 16, 2, 16, 64
N_HEADS, PROJ_H, PRED_H, OUT_D = 2, 16, 32, 4
LRS = [0.01, 0.03, 0.02, 0.02, 0.05, 0.04]
STAGES = [2, 2, 2, 3, 3, 3]
LAYER_DECAY = 0.65
ENC_WD = 0.3
HEAD_WD = {2: 0.1, 3: 0.2}
EMA_M = 0.6
DT = torch.float64


def encoder_params():
    """Burn path -> shape of the debug ViT's trained parameters (pos_embed is a fixed buffer)."""
    p = {"patch_weight": [DIM, 3, PATCH, PATCH], "patch_bias": [DIM], "cls_token": [1, 1, DIM]}
    for j in range(DEPTH):
        b = f"blocks.{j}"
        for ln in ("norm1", "norm2"):
            p[f"{b}.{ln}.gamma"] = [DIM]
            p[f"{b}.{ln}.beta"] = [DIM]
        for name, (i, o) in (("attn.qkv", (DIM, 3 * DIM)), ("attn.proj", (DIM, DIM)),
                             ("mlp.fc1", (DIM, MLP)), ("mlp.fc2", (MLP, DIM))):
            p[f"{b}.{name}.weight"] = [i, o]  # Burn Linear layout [in, out]
            p[f"{b}.{name}.bias"] = [o]
    p["norm.gamma"] = [DIM]
    p["norm.beta"] = [DIM]
    return {f"encoder.{k}": v for k, v in p.items()}


def head_params():
    p = {}
    for h in range(N_HEADS):
        for part, dims in (("projector", [DIM, PROJ_H, PROJ_H, OUT_D]),
                           ("predictor", [OUT_D, PRED_H, OUT_D])):
            for i in range(len(dims) - 1):
                q = f"heads.{h}.{part}.{i}"
                p[f"{q}.linear.weight"] = [dims[i], dims[i + 1]]
                p[f"{q}.bn.gamma"] = [dims[i + 1]]
                p[f"{q}.bn.beta"] = [dims[i + 1]]
    return p


def reference_name(path):
    """mimr's Burn path -> the reference's state-dict name (timm / kappamodules / nnclr head)."""
    if path.startswith("encoder."):
        p = path[len("encoder."):]
        p = {"patch_weight": "patch_embed.proj.weight", "patch_bias": "patch_embed.proj.bias"}.get(p, p)
    else:
        p = path.split(".", 2)[2]  # drop heads.<h>.
        p = p.replace(".linear.", ".0.").replace(".bn.", ".1.")
    return p.replace(".gamma", ".weight").replace(".beta", ".bias")


def weight_decay(path, ndim, stage):
    name = reference_name(path)
    if name.endswith(".bias") or ndim <= 1 or name == "cls_token":
        return 0.0
    return ENC_WD if path.startswith("encoder.") else HEAD_WD[stage]


def lr_scale(path):
    if not path.startswith("encoder."):
        return 1.0
    name = reference_name(path)
    n_layers = DEPTH + 1
    if name.startswith("blocks."):
        layer_id = int(name.split(".")[1]) + 1
    elif name.startswith("norm."):
        layer_id = n_layers
    else:  # patch_embed, cls_token
        layer_id = 0
    return LAYER_DECAY ** (n_layers - layer_id)


def f32(t):
    return t.to(torch.float32).to(DT)


def initial(shapes, g):
    w = {}
    for k, s in shapes.items():
        t = 0.3 * torch.randn(s, generator=g, dtype=DT)
        if k.endswith(".gamma"):
            t = 1.0 + 0.1 * torch.randn(s, generator=g, dtype=DT)
        w[k] = f32(t)
    return w


def gradients(shapes, step, g):
    """Random gradients with a random magnitude per tensor; the omitted ones of the docstring."""
    out = {}
    for k, s in shapes.items():
        scale = 10.0 ** float(torch.empty(1, dtype=DT).uniform_(-3, 0, generator=g))
        t = f32(scale * torch.randn(s, generator=g, dtype=DT))
        if STAGES[step] == 2 and k.startswith("encoder."):
            continue
        if step == 1 and k.startswith("heads.1."):
            continue
        if step == 3 and (k.startswith("heads.1.") or k.startswith("encoder.blocks.0.")):
            continue
        out[k] = t
    return out


def make_optimizer(params, stage):
    groups = []
    for k, p in params.items():
        if stage == 2 and k.startswith("encoder."):
            continue  # frozen: not in the stage-2 optimizer
        groups.append({"params": [p], "name": k, "lr_scale": lr_scale(k),
                       "weight_decay": weight_decay(k, p.dim(), stage)})
    return torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.95), eps=1e-8, foreach=False)


def run(g):
    shapes = {**encoder_params(), **head_params()}
    w0 = initial(shapes, g)
    out = {f"w0.{k}": v for k, v in w0.items()}
    params = {k: torch.nn.Parameter(v.clone()) for k, v in w0.items()}
    opt, ema = None, None
    for s, (lr, stage) in enumerate(zip(LRS, STAGES)):
        if opt is None or stage != STAGES[s - 1]:
            opt = make_optimizer(params, stage)  # a fresh optimizer per stage
        if stage == 3 and ema is None:
            ema = {k: p.detach().clone() for k, p in params.items() if k.startswith("encoder.")}
        grads = gradients(shapes, s, g)
        for k, p in params.items():
            p.grad = grads.get(k)
        out.update({f"grad.{s}.{k}": v for k, v in grads.items()})
        for group in opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        opt.step()
        out.update({f"w.{s}.{k}": p.detach().clone() for k, p in params.items()})
        if stage == 3:
            for k in ema:
                ema[k] = EMA_M * ema[k] + (1.0 - EMA_M) * params[k].detach()
            out.update({f"ema.{s}.{k}": v.clone() for k, v in ema.items()})
    check_handoff(opt, params)
    return out


def check_handoff(opt, params):
    """The stage-3 optimizer's own steps: 3 for most, 2 for what had no gradient in step 3."""
    for k, p in params.items():
        want = 2 if k.startswith("heads.1.") or k.startswith("encoder.blocks.0.") else 3
        assert int(opt.state[p]["step"]) == want, (k, opt.state[p]["step"])


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    out = run(g)
    tensors = {k: out[k].to(torch.float32).contiguous() for k in sorted(out)}
    hp = {
        "lrs": LRS, "stages": STAGES, "layer_decay": LAYER_DECAY, "encoder_weight_decay": ENC_WD,
        "head_weight_decay_stage2": HEAD_WD[2], "head_weight_decay_stage3": HEAD_WD[3],
        "ema_momentum": EMA_M, "depth": DEPTH,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    # one metadata entry: safetensors writes several in a random order
    save_file(tensors, OUT, metadata={"hp": json.dumps(hp, sort_keys=True)})
    with open(OUT, "rb") as f:
        data = f.read()
    print(f"wrote {os.path.normpath(OUT)}: {len(tensors)} tensors, {len(data)} bytes, "
          f"sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
