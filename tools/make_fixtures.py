#!/usr/bin/env python3
"""Generate the small checkpoint fixtures and reference outputs used by the Rust tests.

Usage (needs torch, timm, safetensors and numpy, e.g. in a venv outside the repo):

    python tools/make_fixtures.py                 # (re)writes everything under tests/fixtures/
    python tools/make_fixtures.py check-export EXPORTED.safetensors FIXTURE_ref.safetensors \
        --kind prenorm|postnorm --heads N         # validates an encoder exported by the Rust tool

Everything is seeded (torch.manual_seed(0) plus one fixed generator seed per fixture), so reruns
produce the same tensor values. All parameters (LayerNorm affine parameters, LayerScale gammas, CLS
token, biases, ...) are random, so no test can pass because a parameter happens to be 0 or 1.

The reference forward pass below is written directly from the formulas of docs/method.md §1.2
(it does not use timm); timm is only used as an independent cross-check for the pre-norm fixtures.
It runs in float64; the stored outputs are cast to float32.

Files written (see the report / tests for the exact key lists):
  mae_prenorm.pth            MAE/timm keys + decoder junk, torch zip, one nn.Parameter, one offset view
  d2v2_postnorm.pt           fairseq data2vec 2.0 layout, float16 weights, fake fairseq cfg object
  timm_layerscale.safetensors timm VisionTransformer state dict with LayerScale and a non-zero CLS pos row
  refined_prenorm.th         MIM-Refiner (kappamodules) layout with ctor_kwargs etc.
  evil_global.pth            tiny MAE-like file whose `norm.weight` is a pickled __main__.Evil object
  <stem>_ref.safetensors     inputs (`images`, `images_interp`) and outputs (`block.{i}`, `final`,
                             `interp.block.{i}`, `interp.final`) for each of the first four; the interp
                             outputs resize pos_embed by the family's convention (method.md §1.2): plain
                             bicubic, but antialias=True for the timm file (checked against timm's own
                             dynamic_img_size forward)
"""

import argparse
import collections
import math
import os
import sys
import types

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

EPS = 1e-6
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


# --------------------------------------------------------------------------------------------
# reference forward (float64, written from the formulas)
# --------------------------------------------------------------------------------------------

def _ln(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, EPS)


def _attn(x, p, heads):
    B, T, D = x.shape
    hd = D // heads
    qkv = F.linear(x, p["attn.qkv.weight"], p["attn.qkv.bias"])  # (B,T,3D), rows [q;k;v]
    q, k, v = qkv.split(D, dim=-1)

    def split_heads(t):
        return t.reshape(B, T, heads, hd).permute(0, 2, 1, 3)  # (B,H,T,hd)

    q, k, v = split_heads(q), split_heads(k), split_heads(v)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
    o = (a @ v).permute(0, 2, 1, 3).reshape(B, T, D)
    return F.linear(o, p["attn.proj.weight"], p["attn.proj.bias"])


def _mlp(x, p):
    h = F.linear(x, p["mlp.fc1.weight"], p["mlp.fc1.bias"])
    h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))  # exact GELU
    return F.linear(h, p["mlp.fc2.weight"], p["mlp.fc2.bias"])


def reference_forward(m, images, kind, heads):
    """m: dict with float64 tensors
         patch_w [D,3,P,P], patch_b [D], pos [1,H0,W0,D], cls [1,1,D] (effective, incl. any CLS pos row),
         pos_antialias (optional, default False): resize pos with antialias=True (timm) instead of plain bicubic,
         blocks: list of dicts (timm block-relative names, optional ls1.gamma/ls2.gamma),
         norm_w/norm_b (pre-norm), embed_norm_w/embed_norm_b (post-norm)
       returns (list of per-block outputs, final)"""
    x = images.to(torch.float64)
    P = m["patch_w"].shape[-1]
    x = F.conv2d(x, m["patch_w"], m["patch_b"], stride=P)  # (B,D,h,w)
    B, D, h, w = x.shape
    x = x.permute(0, 2, 3, 1)  # (B,h,w,D)
    pos = m["pos"]
    if tuple(pos.shape[1:3]) != (h, w):
        # the family's convention (method.md §1.2): plain bicubic for MAE / data2vec 2.0 / MIM-Refiner,
        # antialias=True for timm files (timm's resample_abs_pos_embed default)
        pos = F.interpolate(pos.permute(0, 3, 1, 2), size=(h, w), mode="bicubic",
                            align_corners=False, antialias=m.get("pos_antialias", False)).permute(0, 2, 3, 1)
    x = (x + pos).reshape(B, h * w, D)
    x = torch.cat([m["cls"].expand(B, -1, -1), x], dim=1)
    if kind == "postnorm":
        x = _ln(x, m["embed_norm_w"], m["embed_norm_b"])
    outs = []
    for p in m["blocks"]:
        if kind == "prenorm":
            ls1 = p.get("ls1.gamma", 1.0)
            ls2 = p.get("ls2.gamma", 1.0)
            x = x + ls1 * _attn(_ln(x, p["norm1.weight"], p["norm1.bias"]), p, heads)
            x = x + ls2 * _mlp(_ln(x, p["norm2.weight"], p["norm2.bias"]), p)
        elif kind == "postnorm":
            x = _ln(x + _attn(x, p, heads), p["norm1.weight"], p["norm1.bias"])
            x = _ln(x + _mlp(x, p), p["norm2.weight"], p["norm2.bias"])
        else:
            raise ValueError(kind)
        outs.append(x)
    final = _ln(x, m["norm_w"], m["norm_b"]) if kind == "prenorm" else x
    return outs, final


def model_from_timm_sd(sd, grid, kind):
    """Build the reference-model dict from timm-named tensors (pos_embed [1,1+N,D] with CLS row)."""
    f = {k: v.detach().to(torch.float64) for k, v in sd.items()}
    D = f["cls_token"].shape[-1]
    pe = f["pos_embed"]
    assert pe.shape[1] == 1 + grid[0] * grid[1], (pe.shape, grid)
    depth = 1 + max(int(k.split(".")[1]) for k in f if k.startswith("blocks."))
    blocks = []
    for i in range(depth):
        pre = f"blocks.{i}."
        blocks.append({k[len(pre):]: v for k, v in f.items() if k.startswith(pre)})
    m = {
        "patch_w": f["patch_embed.proj.weight"], "patch_b": f["patch_embed.proj.bias"],
        "pos": pe[:, 1:].reshape(1, grid[0], grid[1], D),
        "cls": f["cls_token"] + pe[:, :1],
        "blocks": blocks,
    }
    if kind == "prenorm":
        m["norm_w"], m["norm_b"] = f["norm.weight"], f["norm.bias"]
    else:
        m["embed_norm_w"], m["embed_norm_b"] = f["embed_norm.weight"], f["embed_norm.bias"]
    return m


def make_ref(m, kind, heads, images, images_interp):
    blocks, final = reference_forward(m, images, kind, heads)
    iblocks, ifinal = reference_forward(m, images_interp, kind, heads)
    out = {"images": images.float().contiguous(), "images_interp": images_interp.float().contiguous()}
    for i, b in enumerate(blocks):
        out[f"block.{i}"] = b.float().contiguous()
    out["final"] = final.float().contiguous()
    for i, b in enumerate(iblocks):
        out[f"interp.block.{i}"] = b.float().contiguous()
    out["interp.final"] = ifinal.float().contiguous()
    return out


# --------------------------------------------------------------------------------------------
# random parameters
# --------------------------------------------------------------------------------------------

def mae_sincos_2d(D, gh, gw):
    """MAE 2-D sin-cos embedding, shape (gh, gw, D): first half of channels encodes the column (x),
    second half the row (y); each half = [sin(pos*omega), cos(pos*omega)], omega_k = 10000^(-k/(D/4))."""
    assert D % 4 == 0
    q = D // 4
    omega = 1.0 / (10000.0 ** (torch.arange(q, dtype=torch.float64) / q))

    def one_d(pos):
        o = pos[:, None] * omega[None, :]
        return torch.cat([torch.sin(o), torch.cos(o)], dim=1)  # (n, D/2)

    cols = one_d(torch.arange(gw, dtype=torch.float64))  # (gw, D/2)
    rows = one_d(torch.arange(gh, dtype=torch.float64))  # (gh, D/2)
    emb = torch.cat([cols[None, :, :].expand(gh, gw, D // 2), rows[:, None, :].expand(gh, gw, D // 2)], dim=-1)
    return emb.float()


def rand_vit_params(g, D, depth, P, layerscale=False):
    """timm-named random parameters (without pos_embed / cls_token), float32."""
    def n(*shape):
        return torch.randn(*shape, generator=g)

    def lin(o, i):
        return n(o, i) / math.sqrt(i)

    sd = collections.OrderedDict()
    sd["patch_embed.proj.weight"] = n(D, 3, P, P) / math.sqrt(3 * P * P)
    sd["patch_embed.proj.bias"] = 0.1 * n(D)
    for i in range(depth):
        b = f"blocks.{i}."
        sd[b + "norm1.weight"] = 1 + 0.1 * n(D)
        sd[b + "norm1.bias"] = 0.1 * n(D)
        sd[b + "attn.qkv.weight"] = lin(3 * D, D)
        sd[b + "attn.qkv.bias"] = 0.1 * n(3 * D)
        sd[b + "attn.proj.weight"] = lin(D, D)
        sd[b + "attn.proj.bias"] = 0.1 * n(D)
        if layerscale:
            sd[b + "ls1.gamma"] = 0.3 + 0.1 * n(D)
        sd[b + "norm2.weight"] = 1 + 0.1 * n(D)
        sd[b + "norm2.bias"] = 0.1 * n(D)
        sd[b + "mlp.fc1.weight"] = lin(4 * D, D)
        sd[b + "mlp.fc1.bias"] = 0.1 * n(4 * D)
        sd[b + "mlp.fc2.weight"] = lin(D, 4 * D)
        sd[b + "mlp.fc2.bias"] = 0.1 * n(D)
        if layerscale:
            sd[b + "ls2.gamma"] = 0.3 + 0.1 * n(D)
    return sd


def save_st(tensors, path, metadata):
    """safetensors.torch.save_file, then rewrite the JSON header with sorted keys so the file bytes are
    reproducible (the library's metadata map has no fixed order). Data offsets are unchanged."""
    import json
    import struct
    save_file(tensors, path, metadata=metadata)
    with open(path, "rb") as fh:
        raw = fh.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def rand_norm(g, D):
    return 1 + 0.1 * torch.randn(D, generator=g), 0.1 * torch.randn(D, generator=g)


def rand_images(g, B, H, W):
    return torch.randn(B, 3, H, W, generator=g)


# --------------------------------------------------------------------------------------------
# timm cross-check
# --------------------------------------------------------------------------------------------

def timm_check(sd, img_size, patch, D, depth, heads, images, final_ref, layerscale=False, label="",
               dynamic=False):
    """dynamic: run timm with dynamic_img_size=True (images at another size than img_size)."""
    import timm.models.vision_transformer as vt
    model = vt.VisionTransformer(img_size=img_size, patch_size=patch, embed_dim=D, depth=depth,
                                 num_heads=heads, num_classes=0, global_pool="token",
                                 init_values=(0.1 if layerscale else None), dynamic_img_size=dynamic)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    model.eval()
    with torch.inference_mode():
        out = model.forward_features(images.float())
    diff = (out.double() - final_ref.double()).abs().max().item()
    ok = diff < 1e-5
    print(f"  timm cross-check {label}: forward_features vs reference final max|diff| = {diff:.3e} "
          f"-> {'OK' if ok else 'FAIL'}")
    return ok


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

class Evil:
    """Pickled as GLOBAL '__main__ Evil' + REDUCE; a safe loader must refuse it."""

    def __reduce__(self):
        return (Evil, ())


def _fake_fairseq_cfg():
    """Instance of a class whose pickle GLOBAL is fairseq.dataclass.configs.FairseqConfig."""
    names = ["fairseq", "fairseq.dataclass", "fairseq.dataclass.configs"]
    for nm in names:
        if nm not in sys.modules:
            sys.modules[nm] = types.ModuleType(nm)
    sys.modules["fairseq"].dataclass = sys.modules["fairseq.dataclass"]
    sys.modules["fairseq.dataclass"].configs = sys.modules["fairseq.dataclass.configs"]
    mod = sys.modules["fairseq.dataclass.configs"]

    class FairseqConfig:
        pass

    class CommonConfig:
        pass

    for cls in (FairseqConfig, CommonConfig):
        cls.__module__ = "fairseq.dataclass.configs"
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    common = CommonConfig()
    common.seed = 1
    common.fp16 = True
    common.log_interval = 100
    cfg = FairseqConfig()
    cfg._name = None
    cfg.common = common
    cfg.model = {"_name": "data2vec_multi", "embed_dim": 32, "depth": 3, "num_heads": 4,
                 "modalities": {"image": {"patch_size": 4, "input_size": 16}}}
    cfg.task = {"_name": "mae_image_pretraining", "data": "/datasets/imagenet"}
    cfg.optimization = {"max_update": 375300, "lr": [0.001]}
    return cfg


def fixture_mae(out_dir, all_ok):
    print("(1) mae_prenorm.pth")
    g = torch.Generator().manual_seed(1)
    P, IMG, D, depth, heads = 4, 16, 32, 3, 2
    gh = gw = IMG // P
    params = rand_vit_params(g, D, depth, P)
    cls = 0.5 * torch.randn(1, 1, D, generator=g)
    pos = torch.cat([torch.zeros(1, 1, D), mae_sincos_2d(D, gh, gw).reshape(1, gh * gw, D)], dim=1)
    nw, nb = rand_norm(g, D)
    clean = collections.OrderedDict()
    clean["cls_token"] = cls
    clean["pos_embed"] = pos
    clean.update(params)
    clean["norm.weight"] = nw
    clean["norm.bias"] = nb
    Ddec = 16
    junk = collections.OrderedDict([
        ("mask_token", 0.02 * torch.randn(1, 1, Ddec, generator=g)),
        ("decoder_embed.weight", 0.02 * torch.randn(Ddec, D, generator=g)),
        ("decoder_pos_embed", torch.randn(1, 1 + gh * gw, Ddec, generator=g)),
        ("decoder_blocks.0.norm1.weight", torch.randn(Ddec, generator=g)),
        ("decoder_norm.weight", torch.randn(Ddec, generator=g)),
        ("decoder_pred.weight", 0.02 * torch.randn(P * P * 3, Ddec, generator=g)),
    ])
    # pickle-reader stress: one nn.Parameter (-> _rebuild_parameter) and one view with a storage offset
    sd = collections.OrderedDict()
    for k, v in clean.items():
        sd[k] = v
        if k == "cls_token":
            sd["mask_token"] = junk["mask_token"]
    big = torch.randn(8 + 3 * D + 8, generator=g)
    big[8:8 + 3 * D] = clean["blocks.0.attn.qkv.bias"]
    sd["blocks.0.attn.qkv.bias"] = big[8:8 + 3 * D]
    assert sd["blocks.0.attn.qkv.bias"].storage_offset() == 8
    sd["norm.weight"] = torch.nn.Parameter(clean["norm.weight"].clone())
    for k, v in junk.items():
        if k != "mask_token":
            sd[k] = v
    torch.save({"model": sd}, os.path.join(out_dir, "mae_prenorm.pth"))

    g_img = torch.Generator().manual_seed(101)
    images = rand_images(g_img, 2, IMG, IMG)
    images_interp = rand_images(g_img, 2, 24, 16)
    m = model_from_timm_sd(clean, (gh, gw), "prenorm")
    ref = make_ref(m, "prenorm", heads, images, images_interp)
    save_st(ref, os.path.join(out_dir, "mae_prenorm_ref.safetensors"),
              metadata={"kind": "prenorm", "heads": str(heads), "patch": str(P)})
    all_ok &= timm_check(clean, IMG, P, D, depth, heads, images, ref["final"], label="mae_prenorm")
    return all_ok


def fixture_d2v2(out_dir, all_ok):
    print("(2) d2v2_postnorm.pt (float16 weights)")
    g = torch.Generator().manual_seed(2)
    P, IMG, D, depth, heads = 4, 16, 32, 3, 4
    gh = gw = IMG // P
    params = rand_vit_params(g, D, depth, P)
    cls = 0.5 * torch.randn(1, 1, D, generator=g)
    enw, enb = rand_norm(g, D)
    positions = mae_sincos_2d(D, gh, gw).reshape(1, gh * gw, D)
    pre = "modality_encoders.IMAGE."
    model = collections.OrderedDict()
    model[pre + "local_encoder.proj.weight"] = params["patch_embed.proj.weight"]
    model[pre + "local_encoder.proj.bias"] = params["patch_embed.proj.bias"]
    model[pre + "extra_tokens"] = cls
    model[pre + "fixed_positional_encoder.positions"] = positions
    model[pre + "context_encoder.norm.weight"] = enw
    model[pre + "context_encoder.norm.bias"] = enb
    model[pre + "decoder.blocks.0.0.weight"] = 0.02 * torch.randn(D, 1, 3, 3, generator=g)
    model[pre + "decoder.proj.weight"] = 0.02 * torch.randn(D, D, generator=g)
    model["_ema"] = torch.randn(4, generator=g)
    for k, v in params.items():
        if k.startswith("blocks."):
            model[k] = v
    model = collections.OrderedDict((k, v.half()) for k, v in model.items())
    ckpt = {
        "cfg": _fake_fairseq_cfg(),
        "model": model,
        "optimizer_history": [{"optimizer_name": "adam", "num_updates": 10}],
        "extra_state": {"epoch": 3},
    }
    torch.save(ckpt, os.path.join(out_dir, "d2v2_postnorm.pt"))

    # reference uses the fp16 weights upcast
    h = {k: v.to(torch.float64) for k, v in model.items()}
    blocks = []
    for i in range(depth):
        b = f"blocks.{i}."
        blocks.append({k[len(b):]: v for k, v in h.items() if k.startswith(b)})
    m = {
        "patch_w": h[pre + "local_encoder.proj.weight"], "patch_b": h[pre + "local_encoder.proj.bias"],
        "pos": h[pre + "fixed_positional_encoder.positions"].reshape(1, gh, gw, D),
        "cls": h[pre + "extra_tokens"],
        "embed_norm_w": h[pre + "context_encoder.norm.weight"],
        "embed_norm_b": h[pre + "context_encoder.norm.bias"],
        "blocks": blocks,
    }
    g_img = torch.Generator().manual_seed(102)
    images = rand_images(g_img, 2, IMG, IMG)
    images_interp = rand_images(g_img, 2, 24, 16)
    ref = make_ref(m, "postnorm", heads, images, images_interp)
    save_st(ref, os.path.join(out_dir, "d2v2_postnorm_ref.safetensors"),
              metadata={"kind": "postnorm", "heads": str(heads), "patch": str(P)})
    return all_ok


def fixture_timm(out_dir, all_ok):
    print("(3) timm_layerscale.safetensors")
    import timm.models.vision_transformer as vt
    g = torch.Generator().manual_seed(3)
    P, IMG, D, depth, heads = 8, 32, 48, 2, 3
    gh = gw = IMG // P
    timm_model = vt.VisionTransformer(img_size=IMG, patch_size=P, embed_dim=D, depth=depth, num_heads=heads,
                                      init_values=0.1, num_classes=0, global_pool="token")
    params = rand_vit_params(g, D, depth, P, layerscale=True)
    nw, nb = rand_norm(g, D)
    rnd = dict(params)
    rnd["cls_token"] = 0.5 * torch.randn(1, 1, D, generator=g)
    rnd["pos_embed"] = 0.5 * torch.randn(1, 1 + gh * gw, D, generator=g)  # random, non-zero CLS row
    rnd["norm.weight"], rnd["norm.bias"] = nw, nb
    # overwrite every parameter/buffer of the timm model with the random values (strict)
    timm_keys = list(timm_model.state_dict().keys())
    assert set(timm_keys) == set(rnd.keys()), set(timm_keys) ^ set(rnd.keys())
    timm_model.load_state_dict(rnd, strict=True)
    sd = collections.OrderedDict((k, v.detach().clone().contiguous()) for k, v in timm_model.state_dict().items())
    save_st(sd, os.path.join(out_dir, "timm_layerscale.safetensors"),
              metadata={"format": "pt", "num_heads": str(heads)})

    g_img = torch.Generator().manual_seed(103)
    images = rand_images(g_img, 2, IMG, IMG)
    images_interp = rand_images(g_img, 2, 48, 40)
    m = model_from_timm_sd(sd, (gh, gw), "prenorm")
    m["pos_antialias"] = True  # a timm file: timm resizes pos_embed with antialias=True
    ref = make_ref(m, "prenorm", heads, images, images_interp)
    save_st(ref, os.path.join(out_dir, "timm_layerscale_ref.safetensors"),
              metadata={"kind": "prenorm", "heads": str(heads), "patch": str(P)})
    all_ok &= timm_check(sd, IMG, P, D, depth, heads, images, ref["final"], layerscale=True,
                         label="timm_layerscale")
    all_ok &= timm_check(sd, IMG, P, D, depth, heads, images_interp, ref["interp.final"], layerscale=True,
                         label="timm_layerscale at 48x40 (dynamic_img_size)", dynamic=True)
    return all_ok


def fixture_refined(out_dir, all_ok):
    print("(4) refined_prenorm.th")
    g = torch.Generator().manual_seed(4)
    P, IMG, D, depth, heads = 4, 16, 32, 2, 2
    gh = gw = IMG // P
    params = rand_vit_params(g, D, depth, P)
    cls = 0.5 * torch.randn(1, 1, D, generator=g)
    nw, nb = rand_norm(g, D)
    sd = collections.OrderedDict()
    sd["patch_embed.proj.weight"] = params["patch_embed.proj.weight"]
    sd["patch_embed.proj.bias"] = params["patch_embed.proj.bias"]
    sd["pos_embed.embed"] = mae_sincos_2d(D, gh, gw).reshape(1, gh, gw, D)
    sd["cls_tokens.tokens"] = cls
    for k, v in params.items():
        if k.startswith("blocks."):
            sd[k] = v
    sd["norm.weight"], sd["norm.bias"] = nw, nb
    ckpt = {
        "state_dict": sd,
        "ctor_kwargs": {"kind": "vit.prenorm_vit", "patch_size": P, "dim": D, "depth": depth,
                        "num_attn_heads": heads},
        "abs_ckpt": {"epoch": 1, "update": 10, "sample": 100},
        "stage_id": "abc123",
        "ema": 0.9999,
    }
    torch.save(ckpt, os.path.join(out_dir, "refined_prenorm.th"))

    f = {k: v.to(torch.float64) for k, v in sd.items()}
    blocks = []
    for i in range(depth):
        b = f"blocks.{i}."
        blocks.append({k[len(b):]: v for k, v in f.items() if k.startswith(b)})
    m = {"patch_w": f["patch_embed.proj.weight"], "patch_b": f["patch_embed.proj.bias"],
         "pos": f["pos_embed.embed"], "cls": f["cls_tokens.tokens"], "blocks": blocks,
         "norm_w": f["norm.weight"], "norm_b": f["norm.bias"]}
    g_img = torch.Generator().manual_seed(104)
    images = rand_images(g_img, 2, IMG, IMG)
    images_interp = rand_images(g_img, 2, 24, 16)
    ref = make_ref(m, "prenorm", heads, images, images_interp)
    save_st(ref, os.path.join(out_dir, "refined_prenorm_ref.safetensors"),
              metadata={"kind": "prenorm", "heads": str(heads), "patch": str(P)})
    return all_ok


def fixture_evil(out_dir, all_ok):
    print("(5) evil_global.pth")
    g = torch.Generator().manual_seed(5)
    P, D, depth, gh, gw = 4, 8, 1, 2, 2
    sd = collections.OrderedDict()
    sd["cls_token"] = torch.randn(1, 1, D, generator=g)
    sd["pos_embed"] = torch.cat([torch.zeros(1, 1, D), mae_sincos_2d(D, gh, gw).reshape(1, gh * gw, D)], 1)
    sd.update(rand_vit_params(g, D, depth, P))
    sd["norm.weight"] = Evil()
    sd["norm.bias"] = torch.randn(D, generator=g)
    torch.save({"model": sd}, os.path.join(out_dir, "evil_global.pth"))
    return all_ok


def _describe(out_dir):
    print("files:")
    for fn in sorted(os.listdir(out_dir)):
        size = os.path.getsize(os.path.join(out_dir, fn))
        assert size <= 2 * 1024 * 1024, fn
        print(f"  {size:>9d}  {fn}")


def generate():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    out_dir = os.path.normpath(OUT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    ok = True
    ok = fixture_mae(out_dir, ok)
    ok = fixture_d2v2(out_dir, ok)
    ok = fixture_timm(out_dir, ok)
    ok = fixture_refined(out_dir, ok)
    ok = fixture_evil(out_dir, ok)
    _describe(out_dir)
    if not ok:
        print("timm cross-check FAILED")
        sys.exit(1)
    print("all timm cross-checks passed")


# --------------------------------------------------------------------------------------------
# check-export
# --------------------------------------------------------------------------------------------

def check_export(args):
    sd = load_file(args.exported)
    ref = load_file(args.reference)
    kind, heads = args.kind, args.heads
    P = sd["patch_embed.proj.weight"].shape[-1]
    D = sd["patch_embed.proj.weight"].shape[0]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    images, images_interp = ref["images"], ref["images_interp"]
    grid = (images.shape[2] // P, images.shape[3] // P)
    print(f"exported: patch {P}, dim {D}, depth {depth}, heads {heads}, grid {grid}, kind {kind}, "
          f"{len(sd)} tensors")
    expected = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    expected |= {"norm.weight", "norm.bias"} if kind == "prenorm" else {"embed_norm.weight", "embed_norm.bias"}
    for i in range(depth):
        for n in ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]:
            expected |= {f"blocks.{i}.{n}.weight", f"blocks.{i}.{n}.bias"}
    layerscale = any(k.endswith("ls1.gamma") for k in sd)
    if layerscale:
        expected |= {f"blocks.{i}.ls{j}.gamma" for i in range(depth) for j in (1, 2)}
    missing, extra = expected - set(sd), set(sd) - expected
    if missing or extra:
        print(f"key mismatch: missing {sorted(missing)}, unexpected {sorted(extra)}")
        sys.exit(1)
    m = model_from_timm_sd(sd, grid, kind)
    from safetensors import safe_open
    with safe_open(args.exported, "pt") as fh:
        pos_interp = (fh.metadata() or {}).get("pos_interp", "bicubic-antialias")  # mimr's default for safetensors
    m["pos_antialias"] = pos_interp == "bicubic-antialias"
    print(f"pos_interp (metadata): {pos_interp}")
    worst = 0.0
    for prefix, imgs in (("", images), ("interp.", images_interp)):
        blocks, final = reference_forward(m, imgs, kind, heads)
        for i, b in enumerate(blocks):
            d = (b - ref[f"{prefix}block.{i}"].double()).abs().max().item()
            worst = max(worst, d)
            print(f"  {prefix}block.{i}: max|diff| = {d:.3e}")
        d = (final - ref[f"{prefix}final"].double()).abs().max().item()
        worst = max(worst, d)
        print(f"  {prefix}final: max|diff| = {d:.3e}")
    ok = worst <= 1e-4
    if kind == "prenorm":
        ok &= timm_check(sd, images.shape[2], P, D, depth, heads, images, ref["final"],
                         layerscale=layerscale, label="exported") or False
    print(f"worst max|diff| = {worst:.3e} -> {'OK' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "check-export":
        ap = argparse.ArgumentParser(prog="make_fixtures.py check-export")
        ap.add_argument("exported")
        ap.add_argument("reference")
        ap.add_argument("--kind", choices=["prenorm", "postnorm"], required=True)
        ap.add_argument("--heads", type=int, required=True)
        check_export(ap.parse_args(sys.argv[2:]))
    else:
        generate()


if __name__ == "__main__":
    main()
