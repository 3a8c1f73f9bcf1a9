"""ViT image encoder (pre-norm), laid out like BLIP's vision model so real checkpoints map onto it one to one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import VisionConfig
from .attention import attend, merge_heads
from .outputs import VisionOutput


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)  # (3, B, nh, N, hd)
        ctx, probs = attend(qkv[0], qkv[1], qkv[2], None, need_weights)
        return self.proj(merge_heads(ctx)), probs


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attn = VisionAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        h, probs = self.attn(self.norm1(x), need_weights)
        x = x + h
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return x, probs


class VisionTransformer(nn.Module):
    """Image (B, 3, H, W) -> tokens (B, 1 + N, Dv): [CLS] then one token per patch, after a final LayerNorm (plus the
    2D sine-cosine position table on the patch tokens with ``VisionConfig.output_pos_embed``)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        # (B, 3, H, W) -> (B, Dv, H/p, W/p), one way or the other (VisionConfig.stem)
        self.patch_embed = conv_stem(cfg) if cfg.stem == "conv" else nn.Conv2d(3, d, cfg.patch_size, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + 1, d))
        self.blocks = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        if cfg.pos_embed_init == "sincos":
            with torch.no_grad():
                self.pos_embed[0, 1:] = sincos_2d(cfg.image_size // cfg.patch_size, d)  # [CLS] keeps 0
        else:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if cfg.output_pos_embed:  # a constant, rebuilt from the config: not in the state dict
            table = torch.cat([torch.zeros(1, d), sincos_2d(cfg.image_size // cfg.patch_size, d)])[None]
            self.register_buffer("output_pos", table, persistent=False)  # (1, 1 + N, Dv)

    def forward(self, pixel_values: Tensor, output_hidden_states: bool = False,
                output_attentions: bool = False) -> VisionOutput:
        x = self.patch_embed(pixel_values)  # (B, Dv, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, N, Dv)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, Dv)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (B, 1 + N, Dv)
        hidden, attns = [], []
        for block in self.blocks:
            if output_hidden_states:
                hidden.append(x)
            x, probs = block(x, output_attentions)
            if output_attentions:
                attns.append(probs)
        x = self.norm(x)
        if self.cfg.output_pos_embed:
            x = x + self.output_pos
        if output_hidden_states:
            hidden.append(x)  # the last entry is the normalised output, as in BLIP
        return VisionOutput(last_hidden=x, hidden_states=tuple(hidden) or None, attentions=tuple(attns) or None)


def conv_stem(cfg: VisionConfig) -> nn.Sequential:
    """log2(patch_size) 3x3 stride-2 convolutions (BatchNorm, ReLU), channels doubling up to the width, then a 1x1
    convolution to the width: the image comes out on the same patch grid as the linear patch embedding's."""
    d, n = cfg.hidden_size, cfg.patch_size.bit_length() - 1
    layers: list[nn.Module] = []
    c_in = 3
    for i in range(n):
        c_out = max(d >> (n - 1 - i), 8)
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        c_in = c_out
    layers.append(nn.Conv2d(c_in, d, 1))
    return nn.Sequential(*layers)


def sincos_2d(grid: int, dim: int) -> Tensor:
    """MAE's 2D sine-cosine position table (grid * grid, dim): half the channels encode the row, half the column."""
    if dim % 4:
        raise ValueError(f"sincos position embeddings need a width divisible by 4, got {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (dim/4,)
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")  # (grid, grid)

    def encode(p: Tensor) -> Tensor:
        angles = p.reshape(-1, 1) * freqs  # (grid*grid, dim/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (grid*grid, dim/2)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()  # (grid*grid, dim)
