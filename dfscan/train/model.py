"""PG-FDD (Lin et al., CVPR 2024): three encoders, 1x1 blocks, heads, AdaIN fusion, conditional decoder.

Module and attribute names follow the official implementation so its state_dict maps key for key
(`encoder_f/_c/_fair`, `block_{spe,sha,fair,fused}`, `head_{spe,sha,fair,fused}`, `con_gan`).
`block_fused` exists in the official network but its forward never uses it; it is kept for layout.
Inference needs encoder_f, encoder_fair, block_sha, block_fair, AdaIN and head_fused — and, since
head_fused pools first and AdaIN keeps f_sha's spatial mean, in fact only encoder_f, block_sha and
head_fused: `PGFDDDeploy` holds those (see `single_pass_exact`) and returns p_fake.
"""

from __future__ import annotations

import torch
from torch import nn

from dfscan.train.backbones import create_backbone, feature_grid
from dfscan.train.backbones._encoder import Encoder
from dfscan.train.config import ModelConfig


def adain(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Re-style x with y's per-sample, per-channel spatial statistics: (x-μx)/σx·σy+μy.

    σ = sqrt(unbiased var + eps), as in the official code. Statistics are computed in float32 so
    FP16 inputs cannot overflow when squared; the result is cast back to x's dtype. Written with
    mean/sum only so it exports cleanly to ONNX.
    """
    if x.shape[:2] != y.shape[:2]:
        raise ValueError(f"adain: batch/channels differ {tuple(x.shape)} vs {tuple(y.shape)}")
    dtype = x.dtype
    xf, yf = x.float(), y.float()

    def stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = t.shape[-1] * t.shape[-2]
        mean = t.mean(dim=(2, 3), keepdim=True)
        var = (t - mean).pow(2).sum(dim=(2, 3), keepdim=True) / (n - 1)
        return mean, torch.sqrt(var + eps)

    mx, sx = stats(xf)
    my, sy = stats(yf)
    return ((xf - mx) / sx * sy + my).to(dtype)


class AdaIN(nn.Module):
    """Parameter-free module wrapper around `adain`."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return adain(x, y, self.eps)


class Conv2d1x1(nn.Module):
    """Feature block: 1x1 convs in→hidden→hidden→out with LeakyReLU between (official `conv2d.{0,2,4}`)."""

    def __init__(self, in_f: int, hidden_dim: int, out_f: int):
        super().__init__()
        self.conv2d = nn.Sequential(
            nn.Conv2d(in_f, hidden_dim, 1, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, 1, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(hidden_dim, out_f, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(x)


class Head(nn.Module):
    """Global average pool, Linear(in, hidden), LeakyReLU, Linear(hidden, out), dropout on the logits.

    Returns (logits, pooled features); the pooled features feed the contrastive loss.
    """

    def __init__(self, in_f: int, hidden_dim: int, out_f: int):
        super().__init__()
        self.do = nn.Dropout(0.2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mlp = nn.Sequential(nn.Linear(in_f, hidden_dim), nn.LeakyReLU(inplace=True), nn.Linear(hidden_dim, out_f))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = torch.flatten(self.pool(x), 1)
        return self.do(self.mlp(feat)), feat


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
    )


class ConditionalUNet(nn.Module):
    """The conditional decoder (`con_gan`): rebuilds a 256x256 image from forgery features `c` and
    content/demographic features `x` (both 512x8x8), re-styling x by c with AdaIN at each scale.

    8→16→32→64 by bilinear x2 upsampling (align_corners) with double 3x3 convs 512→256→128→64,
    a 1x1 conv to RGB, x4 bilinear upsampling to 256 and tanh (the input range is [-1, 1]).
    """

    def __init__(self, in_channels: int = 512):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.dropout = nn.Dropout(p=0.3)
        self.adain3, self.adain2, self.adain1 = AdaIN(), AdaIN(), AdaIN()
        self.dconv_up3 = _double_conv(in_channels, 256)
        self.dconv_up2 = _double_conv(256, 128)
        self.dconv_up1 = _double_conv(128, 64)
        self.conv_last = nn.Conv2d(64, 3, 1)
        self.up_last = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=True)
        self.activation = nn.Tanh()

    def forward(self, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = self.dconv_up3(self.dropout(self.upsample(self.adain3(x, c))))
        c = self.dconv_up3(self.dropout(self.upsample(c)))
        x = self.dconv_up2(self.dropout(self.upsample(self.adain2(x, c))))
        c = self.dconv_up2(self.dropout(self.upsample(c)))
        x = self.dconv_up1(self.dropout(self.upsample(self.adain1(x, c))))
        return self.activation(self.up_last(self.conv_last(x)))


def _block(cfg: ModelConfig) -> Conv2d1x1:
    half = cfg.feature_channels // 2
    return Conv2d1x1(cfg.feature_channels, half, half)


def _head(cfg: ModelConfig, out: int) -> Head:
    return Head(cfg.feature_channels // 2, cfg.feature_channels, out)


class PGFDD(nn.Module):
    """The full PG-FDD network used for training.

    forward(x) returns logits `cls_spe, cls_sha, cls_fair, cls_fused`, `prob` = softmax(cls_fused)[:,1],
    pooled 256-d `feat_spe, feat_sha, feat_fair, feat_fused`, and (unless inference) `recon`: four
    (reconstruction, target) pairs for the L1 reconstruction loss. As in the official code, the
    batch is read as two halves a (first) and b (second) — real then fake — and
    self_a = D(f_a, cd_a)→x_a, self_b = D(f_b, cd_b)→x_b, cross_a = D(f_b, cd_a)→x_a,
    cross_b = D(f_a, cd_b)→x_b, where f = [block_spe, block_sha](E_f), cd = AdaIN(E_fair, E_c).
    """

    def __init__(self, config: ModelConfig | None = None, pretrained: bool = False):
        super().__init__()
        self.config = config = config or ModelConfig()
        ch = config.feature_channels
        self.encoder_f = create_backbone(config.backbone, pretrained, feature_channels=ch)
        self.encoder_c = create_backbone(config.backbone, pretrained, feature_channels=ch)
        self.encoder_fair = create_backbone(config.backbone, pretrained, feature_channels=ch)
        self.con_gan = ConditionalUNet(ch)
        self.adain = AdaIN()
        self.head_spe = _head(config, config.num_spe)
        self.head_sha = _head(config, config.num_sha)
        self.head_fair = _head(config, config.num_fair)
        self.head_fused = _head(config, config.num_fused)
        self.block_spe = _block(config)
        self.block_sha = _block(config)
        self.block_fair = _block(config)
        self.block_fused = _block(config)  # in the official layout, unused by its forward

    def forward(self, x: torch.Tensor, inference: bool = False, trunk: torch.Tensor | None = None) -> dict:
        """`trunk`: the backbones' shared trunk output for x, precomputed (`dfscan.train.frozen`: a frozen,
        pretrained trunk is the same in all three encoders, so only their `adjust_channel`
        projections run); x is then only the reconstruction target, at any size."""
        def encode(encoder: Encoder) -> torch.Tensor:
            return encoder(x) if trunk is None else encoder.adjust_channel(trunk)

        f_all = encode(self.encoder_f)
        fair_all = encode(self.encoder_fair)
        f_spe, f_sha = self.block_spe(f_all), self.block_sha(f_all)
        f_fair = self.block_fair(fair_all)
        fused = self.adain(f_fair, f_sha)

        cls_spe, feat_spe = self.head_spe(f_spe)
        cls_sha, feat_sha = self.head_sha(f_sha)
        cls_fair, feat_fair = self.head_fair(f_fair)
        cls_fused, feat_fused = self.head_fused(fused)
        out = {
            "cls_spe": cls_spe, "cls_sha": cls_sha, "cls_fair": cls_fair, "cls_fused": cls_fused,
            "prob": torch.softmax(cls_fused, dim=1)[:, 1],
            "prob_sha": torch.softmax(cls_sha, dim=1)[:, 1],
            "feat_spe": feat_spe, "feat_sha": feat_sha, "feat_fair": feat_fair, "feat_fused": feat_fused,
        }
        if inference:
            return out

        c_all = encode(self.encoder_c)
        out["feat_content"] = c_all
        out["recon"] = []
        if x.shape[0] >= 2 and x.shape[0] % 2 == 0:
            f_cat = torch.cat((f_spe, f_sha), dim=1)
            f_a, f_b = f_cat.chunk(2, dim=0)
            c_a, c_b = c_all.chunk(2, dim=0)
            d_a, d_b = fair_all.chunk(2, dim=0)
            x_a, x_b = x.chunk(2, dim=0)
            cd_a, cd_b = self.adain(d_a, c_a), self.adain(d_b, c_b)
            out["recon"] = [
                (self._decode(f_a, cd_a, x_a), x_a),
                (self._decode(f_b, cd_b, x_b), x_b),
                (self._decode(f_b, cd_a, x_a), x_a),
                (self._decode(f_a, cd_b, x_b), x_b),
            ]
        return out

    def _decode(self, c: torch.Tensor, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """con_gan's image at `like`'s size: it decodes 32 pixels per feature cell, which is the
        input size for stride-32 CNNs but not for a 14-px-patch ViT."""
        rec = self.con_gan(c, x)
        if rec.shape[-2:] != like.shape[-2:]:
            rec = torch.nn.functional.interpolate(rec, size=like.shape[-2:], mode="bilinear", align_corners=False)
        return rec

    def deploy(self, single_pass: bool | None = None) -> "PGFDDDeploy":
        """The inference-only module with this model's weights."""
        return PGFDDDeploy.from_full(self, single_pass)


SINGLE_PASS_PARTS = ("encoder_f", "block_sha", "head_fused")
DEPLOY_PARTS = SINGLE_PASS_PARTS + ("encoder_fair", "block_fair")  # the two-pass graph's parts


def single_pass_exact(config: ModelConfig) -> tuple[bool, str]:
    """Whether p_fake can be computed from encoder_f alone, exactly, and why.

    head_fused starts with a global average pool, and the spatial mean of AdaIN(x, y) is μy
    whatever x is, so head_fused(AdaIN(f_fair, f_sha)) = head_fused(f_sha): encoder_fair
    shapes the features only through training. This needs AdaIN to be defined, i.e. a feature
    grid of at least 2x2 (its variance is unbiased: n − 1 in the denominator).
    """
    grid = feature_grid(config.backbone, config.input_size)
    if grid < 2:
        return False, (f"{config.input_size}px input gives a {grid}x{grid} feature grid, where AdaIN's unbiased "
                       "variance is undefined: the two-pass graph is kept")
    return True, ("head_fused begins with a global average pool and the spatial mean of AdaIN(f_fair, f_sha) is "
                  "that of f_sha: p_fake depends on encoder_f only (encoder_fair, block_fair dropped)")


class PGFDDDeploy(nn.Module):
    """Inference subgraph: normalised (B,3,S,S) crops -> p_fake (B,).

    One backbone pass (encoder_f → block_sha → head_fused) wherever `single_pass_exact` holds
    for the config, else the official two passes with AdaIN fusion. `single_pass` forces either
    (the two-pass graph is the reference the tests compare against).
    """

    def __init__(self, config: ModelConfig | None = None, pretrained: bool = False, single_pass: bool | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        self.single_pass = single_pass_exact(config)[0] if single_pass is None else bool(single_pass)
        ch = config.feature_channels
        self.encoder_f = create_backbone(config.backbone, pretrained, feature_channels=ch)
        self.block_sha = _block(config)
        self.head_fused = _head(config, config.num_fused)
        if not self.single_pass:
            self.encoder_fair = create_backbone(config.backbone, pretrained, feature_channels=ch)
            self.block_fair = _block(config)

    @property
    def parts(self) -> tuple[str, ...]:
        return SINGLE_PASS_PARTS if self.single_pass else DEPLOY_PARTS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f_sha = self.block_sha(self.encoder_f(x))
        if self.single_pass:
            logits, _ = self.head_fused(f_sha)
        else:
            f_fair = self.block_fair(self.encoder_fair(x))
            logits, _ = self.head_fused(adain(f_fair, f_sha))
        return torch.softmax(logits.float(), dim=1)[:, 1]

    @classmethod
    def from_full(cls, model: PGFDD, single_pass: bool | None = None) -> "PGFDDDeploy":
        """Copy the inference parts of a full model (eval mode, same device and dtype)."""
        deploy = cls(model.config, single_pass=single_pass)
        for name in deploy.parts:
            getattr(deploy, name).load_state_dict(getattr(model, name).state_dict())
        p = next(model.parameters())
        return deploy.to(device=p.device, dtype=p.dtype).eval()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
