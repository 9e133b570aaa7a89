#!/usr/bin/env python3
"""Reference fixture for the MAE model and loss (src/model/mae.rs, tests/mae.rs).

Usage (needs torch, timm, safetensors and numpy, e.g. the repo's .venv):

    python tools/make_mae_fixture.py      # (re)writes tests/fixtures/mae_forward.safetensors

A tiny MAE written inline after the structure of facebookresearch/mae `models_mae.py` (timm's
`Block` and `PatchEmbed`, LayerNorm eps 1e-6, qkv bias, 2-D sin-cos positions with a zero CLS row):
image 16, patch 4 (L = 16 patches), encoder D = 32, depth 2, heads 2; decoder 24 wide, depth 1,
heads 2; mask ratio 0.75 (4 patches kept). Every trainable parameter (LayerNorm affines, biases,
CLS and mask tokens included) is random, so no test passes because a parameter is 0 or 1. The
model runs in float64 on weights rounded to float32; everything is stored as float32 (integer
quantities such as ids_restore as float32 too, scalars with shape [1]).

Tensor names
------------
  MAE state-dict names of every parameter/buffer: cls_token, pos_embed [1, 17, 32],
  patch_embed.proj.{weight,bias}, blocks.{0,1}.*, norm.*, decoder_embed.*, mask_token,
  decoder_pos_embed [1, 17, 24], decoder_blocks.0.*, decoder_norm.*, decoder_pred.*
  images [3, 3, 16, 16]     the input batch
  noise [3, 16]             the masking noise (uniform, distinct values)
  ids_restore [3, 16]       argsort(argsort(noise))
  mask [3, 16]              0 = kept, 1 = removed, in the original patch order
  latent [3, 5, 32]         encoder output on the kept patches (CLS first)
  pred [3, 16, 48]          decoder prediction per patch (CLS dropped)
  target [3, 16, 48]        patchify(images) (nchpwq -> nhwpqc)
  loss [1], loss_norm_pix [1]   the masked MSE without / with norm_pix_loss
"""

import os

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.models.vision_transformer import Block, PatchEmbed

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "mae_forward.safetensors")
IMG, PATCH, DIM, DEPTH, HEADS = 16, 4, 32, 2, 2
DEC_DIM, DEC_DEPTH, DEC_HEADS = 24, 1, 2
MASK_RATIO, BATCH = 0.75, 3


def sincos_1d(d, pos):
    omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(d, size):
    """MAE's get_2d_sincos_pos_embed with cls_token=True: [1 + size², d], zero CLS row."""
    gw, gh = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    emb = np.concatenate([sincos_1d(d // 2, gw), sincos_1d(d // 2, gh)], axis=1)
    return np.concatenate([np.zeros([1, d]), emb], axis=0)


class TinyMae(nn.Module):
    def __init__(self):
        super().__init__()
        norm = lambda d, **kw: nn.LayerNorm(d, eps=1e-6, **kw)
        self.patch_embed = PatchEmbed(IMG, PATCH, 3, DIM)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, DIM), requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(DIM, HEADS, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(DEPTH)])
        self.norm = norm(DIM)
        self.decoder_embed = nn.Linear(DIM, DEC_DIM, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, DEC_DIM))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n + 1, DEC_DIM), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [Block(DEC_DIM, DEC_HEADS, 4.0, qkv_bias=True, norm_layer=norm)
             for _ in range(DEC_DEPTH)])
        self.decoder_norm = norm(DEC_DIM)
        self.decoder_pred = nn.Linear(DEC_DIM, PATCH ** 2 * 3, bias=True)
        side = IMG // PATCH
        self.pos_embed.data.copy_(torch.from_numpy(sincos_2d(DIM, side)).unsqueeze(0))
        self.decoder_pos_embed.data.copy_(torch.from_numpy(sincos_2d(DEC_DIM, side)).unsqueeze(0))

    def patchify(self, imgs):
        p = PATCH
        h = w = imgs.shape[2] // p
        x = imgs.reshape(imgs.shape[0], 3, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(imgs.shape[0], h * w, p ** 2 * 3)

    def random_masking(self, x, noise):
        n, l, d = x.shape
        len_keep = int(l * (1 - MASK_RATIO))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones([n, l], dtype=x.dtype)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(self, imgs, noise):
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, noise)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def forward_loss(self, imgs, pred, mask, norm_pix_loss):
        target = self.patchify(imgs)
        if norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()


def main():
    torch.manual_seed(0)
    model = TinyMae()
    g = torch.Generator().manual_seed(13)
    for name, p in model.named_parameters():
        if "pos_embed" in name:
            continue
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or "norm.weight" in name:
            p.data = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
        else:
            fan_in = p.shape[1] if p.dim() == 2 else (p[0].numel() if p.dim() == 4 else 25)
            p.data = torch.randn(p.shape, generator=g) / fan_in ** 0.5
    model = model.float().double()  # weights are float32 values, the forward float64
    model.eval()
    images = torch.randn(BATCH, 3, IMG, IMG, generator=g).float().double()
    noise = torch.rand(BATCH, (IMG // PATCH) ** 2, generator=g).float().double()
    assert all(len(set(r.tolist())) == r.numel() for r in noise), "noise needs distinct values"
    with torch.no_grad():
        latent, mask, ids_restore = model.forward_encoder(images, noise)
        pred = model.forward_decoder(latent, ids_restore)
        loss = model.forward_loss(images, pred, mask, False)
        loss_np = model.forward_loss(images, pred, mask, True)
    assert mask.sum().item() == BATCH * 12
    out = {k: v.detach() for k, v in model.state_dict().items()}
    out.update(images=images, noise=noise, ids_restore=ids_restore.double(), mask=mask,
               latent=latent, pred=pred, target=model.patchify(images), loss=loss.reshape(1),
               loss_norm_pix=loss_np.reshape(1))
    out = {k: v.float().contiguous() for k, v in out.items()}
    save_file(out, OUT, metadata={"generator": "tools/make_mae_fixture.py"})
    print(f"wrote {OUT}: loss {loss.item():.6f}, loss_norm_pix {loss_np.item():.6f}")


if __name__ == "__main__":
    main()
