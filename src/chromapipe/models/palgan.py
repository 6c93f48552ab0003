"""PalGAN (Wang, Xia, Qi, Shao, Qiao, ECCV 2022): colorization as palette prediction + palette assignment.

The authors never released code; the networks follow the supplement's layer lists (§1) and the poster
(docs/papers.md#palgan-architecture). Every gap they leave (docs/papers.md#palgan-left-open) is filled by a
choice stated here.

Networks (Conv(k,s,c), LReLU slope 0.2 throughout, ⊗ = channel concatenation):
- Palette generator E: L -> 6 × [Conv(3,2,c) -> LReLU], c = 32, 64, 128, 256, 256, 256 -> FC(4096, 256)
  -> Sigmoid -> ĥ. Conv_1..Conv_4 outputs are M_1..M_4 (skips into G). At 256² the last map is 4×4×256 =
  4096; at other sizes it is adaptive-average-pooled to 4×4 first (an identity at 256²), so FC(4096, 256)
  keeps its size and the model runs at any multiple of 64.
- Palette assignment generator G: L↓ ⊗ M_4 -> Conv(3,2,512) -> LReLU -> 2 × ResBlock(512) -> ↑ ⊗ M_3 ->
  2 × ResBlock(256) (= S) -> ↑ ⊗ M_2 -> 2 × ResBlock(128) -> ResBlock(64) -> CA(S, L) -> ↑ -> Conv(3,1,2)
  -> tanh. ResBlocks are SPADE's ([5] in the supplement): PalNorm -> LReLU -> Conv 3×3, twice, plus a
  PalNorm -> Conv 1×1 shortcut where the width changes. **PalNorm** = parameter-free instance
  normalisation, then ``x̂·(1 + γ(p)) + β(p)`` with γ, β predicted per channel by an MLP
  (256 -> ``palnorm_hidden`` -> ReLU -> 2C) from the palette feature p = √h (see :func:`palette_feature`).
  SPADE-like, but conditioned on the global palette vector instead of a spatial map. Instance (not batch)
  statistics: batch statistics would leak other images' colours and need SyncBN under DDP, and the
  paper's ablation shows plain BN doing worse; removing each image's own feature statistics and putting
  palette-predicted ones back is what lets a reference palette take over.
- Chromatic attention CA(x, S, L) = x + Conv1×1([global ⊗ local]):
  global interaction: queries and keys from S by 1×1 convs (256 -> ``attention_dim``), values from the
  current features x by a 1×1 conv; queries at x's resolution (S bilinearly upsampled), keys and values
  at S's resolution (x average-pooled to S's grid), so each position attends over S's grid (32² = 1024
  keys for 4096 queries at 256²: 16 MB of attention weights per image instead of 64 MB at 64²·64²).
  local delineation: a per-pixel affine transform of the (downsampled) luminance, ``A ⊙ L↓ + B``, with
  A, B (C channels each) predicted from [x ⊗ L↓] by two 3×3 convs — a guided-filter-style local linear
  model of colour in intensity, which is what keeps colour edges on luminance edges.
  ``attention`` = both | global | local | none reproduces the paper's CA ablation: ``global``/``local``
  keep one branch (the fusing 1×1 conv then takes only its channels), ``none`` drops CA (identity).
- Color discriminator D: (L ⊕ ab) -> 5 × [Conv(3,2,c) -> LReLU], c = 32, 64, 128, 256, 256 -> global
  average pool -> FC(256, 256) -> LReLU = φ(x); out = ψ(φ) + ⟨embed(p), φ⟩ (projection discriminator,
  Miyato & Koyama 2018; ψ: Linear(256, 1), embed: Linear(256, 256)), p = √h of the **ground-truth**
  palette for real and fake alike (the condition the fake should match; using ĥ for fakes would let D tell
  them apart by the palette alone). Spectral normalisation on every D layer (``d_spectral_norm``), as in
  the projection-discriminator paper; the supplement's "FC(128, 256)" does not match its 256-channel last
  conv, so global pooling to 256 + FC(256, 256) is used.

Resolution bookkeeping at a 256² input (the supplement's ↑ count does not close with its strides):
E: M_1 128²×32, M_2 64²×64, M_3 32²×128, M_4 16²×256, then 8², 4² -> 4096. G: L↓ (16²) ⊗ M_4 -> Conv(3,2,512)
-> 8²×512 (as published) -> ResBlocks -> ↑ to M_3's size **(×4, 8² -> 32²)** ⊗ M_3 -> S 32²×256 -> ↑ ×2 ⊗
M_2 -> 64²×128 -> 64²×64 -> CA at 64² -> ↑ **to the input size (×4, 64² -> 256²)** -> LReLU -> Conv(3,1,2)
-> tanh -> 256²×2. I.e. each ↑ is read as "bilinear resize to the next size the layer list needs". The
LReLU before the last conv is added (pre-activation ResBlocks end on a conv; SPADE's generator does the same).

Scaling: network input L/50 − 1 ∈ [−1, 1]; ab output tanh ∈ [−1, 1], ×128 -> Lab units (encode_ab = ab/128).
The generator returns ``palette`` = ĥ normalised to sum 1 (comparable with the ground-truth histogram,
what evaluation plots) and ``palette_raw`` = the sigmoid outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from chromapipe.config import ConfigError
from chromapipe.models import losses
from chromapipe.models import palette as pal
from chromapipe.models.base import Batch, Logs, Recipe
from chromapipe.models.randomness import per_sample_rand

SLOPE = 0.2
E_CHANNELS = (32, 64, 128, 256, 256, 256)  # Conv_1 … Conv_6 of the palette generator
D_CHANNELS = (32, 64, 128, 256, 256)
FC_SIDE = 4  # 4×4×256 = 4096 inputs to FC(4096, 256) at 256²
MULTIPLE = 64  # E halves the input 6 times
AB_SCALE = 128.0


@dataclasses.dataclass(frozen=True)
class Options:
    """``models.<name>.options`` for ``arch: palgan``.

    attention: chromatic attention variant (the paper's CA ablation): ``both`` (full CA), ``global``
        (global interaction only), ``local`` (local delineation only), ``none`` (no CA).
    palnorm_hidden: hidden width of each PalNorm's palette MLP. The paper gives no value; 276 puts the
        inference part (E + G) with full CA at 21.98 M, the paper's "22 M".
    attention_dim: query/key width of the global interaction (S's 256 channels / 8, as in SAGAN).
    gt_palette_prob: per-sample probability that G is conditioned on the ground-truth palette instead of
        E's prediction ĥ during training (teacher forcing). The paper colorizes both automatically (ĥ) and
        from a reference photo's palette; mixing both teaches G to follow whichever palette it is given,
        while ĥ-conditioned samples train E and G end to end. 0 = always ĥ, 1 = always ground truth.
    palette_sigma: Gaussian smoothing (in bins) of the ground-truth histogram (0 = hard counts).
    d_spectral_norm: spectral normalisation on D's layers (Miyato & Koyama's projection discriminator).
    """

    attention: Literal["both", "global", "local", "none"] = "both"
    palnorm_hidden: int = 276
    attention_dim: int = 32
    gt_palette_prob: float = 0.5
    palette_sigma: float = 0.0
    d_spectral_norm: bool = True

    def __post_init__(self) -> None:
        if self.palnorm_hidden < 1 or self.attention_dim < 1:
            raise ConfigError("options.palnorm_hidden and options.attention_dim must be >= 1")
        if not 0.0 <= self.gt_palette_prob <= 1.0:
            raise ConfigError(f"options.gt_palette_prob: must be in [0, 1], got {self.gt_palette_prob}")
        if self.palette_sigma < 0:
            raise ConfigError(f"options.palette_sigma: must be >= 0, got {self.palette_sigma}")


def palette_feature(h: torch.Tensor) -> torch.Tensor:
    """What PalNorm and D's projection see of a palette: √h of the normalised histogram.

    A histogram's entries are tiny (mean 1/256) and peaky; the square root (the Hellinger embedding) has unit
    L2 norm for every palette, so the MLPs see inputs of one scale whether the palette is a one-colour
    reference or E's smooth prediction.
    """
    return pal.normalize(h.float()).clamp_min(0).sqrt()


def lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(SLOPE)


def conv3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


def resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (the paper's ↑); a no-op when the size already matches."""
    return (
        x
        if tuple(x.shape[-2:]) == tuple(size)
        else F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    )


# -- palette generator E -----------------------------------------------------------------------------------------
class PaletteGenerator(nn.Module):
    """E: L (B,1,H,W) in [−1, 1] -> (sigmoid palette (B,256), [M_1, M_2, M_3, M_4])."""

    def __init__(self) -> None:
        super().__init__()
        chans = (1, *E_CHANNELS)
        self.convs = nn.ModuleList(
            nn.Sequential(conv3(chans[i], chans[i + 1], 2), lrelu()) for i in range(len(E_CHANNELS))
        )
        self.pool = nn.AdaptiveAvgPool2d(FC_SIDE)
        self.fc = nn.Linear(E_CHANNELS[-1] * FC_SIDE * FC_SIDE, pal.NUM_BINS)

    def forward(self, L: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats, x = [], L
        for conv in self.convs:
            x = conv(x)
            feats.append(x)
        raw = torch.sigmoid(self.fc(self.pool(x).flatten(1)))
        return raw, feats[:4]


# -- palette assignment generator G ------------------------------------------------------------------------------
class PalNorm(nn.Module):
    """Instance norm without affine, then per-channel scale/shift predicted from the palette feature.

    Computed as one ``batch_norm`` of a single sample with B·C channels, each with its own scale
    ``1 + γ`` and shift ``β`` (that is how ``at::instance_norm`` itself runs): the same function as
    ``norm(x) * (1 + γ) + β`` (equal to 1e-6 in float32, ``tests/test_models_palgan.py``) in one kernel
    forward instead of three, and without two full-size products in backward. The 17 PalNorms moved a third
    of PalGAN's bytes per training step as three kernels (``bench/profile_step.py``).
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.mlp = nn.Sequential(nn.Linear(pal.NUM_BINS, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.mlp(p).to(x.dtype).chunk(2, dim=1)  # (B, C) each
        B, C, H, W = x.shape
        y = F.batch_norm(
            x.reshape(1, B * C, H, W),
            None,
            None,
            (1 + gamma).reshape(-1),
            beta.reshape(-1),
            training=True,
            eps=self.norm.eps,
        )
        return y.view(B, C, H, W)


class ResBlock(nn.Module):
    """SPADE-style residual block with PalNorm (pre-activation; learned 1×1 shortcut when widths differ)."""

    def __init__(self, c_in: int, c_out: int, hidden: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = PalNorm(c_in, hidden), conv3(c_in, c_out)
        self.norm2, self.conv2 = PalNorm(c_out, hidden), conv3(c_out, c_out)
        self.act = lrelu()
        self.shortcut = None
        if c_in != c_out:
            self.norm_s, self.shortcut = PalNorm(c_in, hidden), nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(self.norm_s(x, p))
        y = self.conv1(self.act(self.norm1(x, p)))
        y = self.conv2(self.act(self.norm2(y, p)))
        return skip + y


class ChromaticAttention(nn.Module):
    """CA(x, S, L): global interaction and/or local delineation, fused by a 1×1 conv, added to x."""

    def __init__(self, channels: int, s_channels: int, attention_dim: int, use_global: bool, use_local: bool) -> None:
        super().__init__()
        if not (use_global or use_local):
            raise ValueError("ChromaticAttention needs at least one branch (use attention: none to drop it)")
        self.use_global, self.use_local = use_global, use_local
        if use_global:
            self.query = nn.Conv2d(s_channels, attention_dim, 1)
            self.key = nn.Conv2d(s_channels, attention_dim, 1)
            self.value = nn.Conv2d(channels, channels, 1)
        if use_local:
            self.affine = nn.Sequential(conv3(channels + 1, channels), lrelu(), conv3(channels, 2 * channels))
        self.fuse = nn.Conv2d(channels * (int(use_global) + int(use_local)), channels, 1)

    def global_interaction(self, x: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        # contiguous (B, tokens, dim): the fused attention kernels need a unit stride in the last dimension,
        # and the transposed views would send every call to the math path (the full HW x hw matrix in memory)
        q = self.query(resize(S, (H, W))).flatten(2).transpose(1, 2).contiguous()  # (B, HW, d)
        k = self.key(S).flatten(2).transpose(1, 2).contiguous()  # (B, hw, d)
        v = self.value(F.adaptive_avg_pool2d(x, S.shape[-2:])).flatten(2).transpose(1, 2).contiguous()  # (B, hw, C)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (B, HW, C)
        return out.transpose(1, 2).reshape(B, C, H, W)

    def local_delineation(self, x: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
        Ls = F.adaptive_avg_pool2d(L, x.shape[-2:]).to(x.dtype)
        A, Bc = self.affine(torch.cat([x, Ls], dim=1)).chunk(2, dim=1)
        return A * Ls + Bc

    def forward(self, x: torch.Tensor, S: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.use_global:
            parts.append(self.global_interaction(x, S))
        if self.use_local:
            parts.append(self.local_delineation(x, L))
        return x + self.fuse(torch.cat(parts, dim=1))


class AssignmentGenerator(nn.Module):
    """G: (L, palette feature p, M_2…M_4) -> ab (B,2,H,W) in [−1, 1]."""

    def __init__(self, hidden: int, attention: str, attention_dim: int) -> None:
        super().__init__()
        m2, m3, m4 = E_CHANNELS[1], E_CHANNELS[2], E_CHANNELS[3]
        self.head = nn.Sequential(conv3(1 + m4, 512, 2), lrelu())
        self.blocks512 = nn.ModuleList([ResBlock(512, 512, hidden), ResBlock(512, 512, hidden)])
        self.blocks256 = nn.ModuleList([ResBlock(512 + m3, 256, hidden), ResBlock(256, 256, hidden)])
        self.blocks128 = nn.ModuleList(
            [ResBlock(256 + m2, 128, hidden), ResBlock(128, 128, hidden), ResBlock(128, 64, hidden)]
        )
        use_g, use_l = attention in ("both", "global"), attention in ("both", "local")
        self.ca = ChromaticAttention(64, 256, attention_dim, use_g, use_l) if (use_g or use_l) else None
        self.act = lrelu()
        self.out = conv3(64, 2)

    @staticmethod
    def _run(blocks: nn.ModuleList, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            x = block(x, p)
        return x

    def forward(self, L: torch.Tensor, p: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        _, M2, M3, M4 = feats
        x = self.head(torch.cat([F.adaptive_avg_pool2d(L, M4.shape[-2:]), M4], dim=1))  # L↓ ⊗ M_4 -> /32
        x = self._run(self.blocks512, x, p)
        S = self._run(self.blocks256, torch.cat([resize(x, M3.shape[-2:]), M3], dim=1), p)  # ↑ ⊗ M_3
        x = self._run(self.blocks128, torch.cat([resize(S, M2.shape[-2:]), M2], dim=1), p)  # ↑ ⊗ M_2
        if self.ca is not None:
            x = self.ca(x, S, L)
        x = resize(x, L.shape[-2:])  # final ↑ to the input size
        return torch.tanh(self.out(self.act(x)))


class PalGANGenerator(nn.Module):
    """E + G: everything inference needs. ``forward(L, palette=None, palette_mask=None)``.

    ``palette`` (B,256) or (1,256), any non-negative scale (normalised here): condition G on it instead of
    E's ĥ (reference-based colorization). ``palette_mask`` (B,) bool, training only: per sample, use
    ``palette`` where True and ĥ where False (teacher forcing). Returns ``ab`` (tanh), ``palette`` (ĥ
    normalised to sum 1) and ``palette_raw`` (E's sigmoid outputs).
    """

    def __init__(self, hidden: int = 276, attention: str = "both", attention_dim: int = 32) -> None:
        super().__init__()
        self.E = PaletteGenerator()
        self.G = AssignmentGenerator(hidden, attention, attention_dim)

    def forward(
        self, L: torch.Tensor, palette: torch.Tensor | None = None, palette_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        if L.shape[-1] % MULTIPLE or L.shape[-2] % MULTIPLE:
            raise ValueError(
                f"PalGAN input {tuple(L.shape[-2:])}: sides must be multiples of {MULTIPLE} "
                "(E halves the image 6 times)"
            )
        raw, feats = self.E(L)
        predicted = pal.normalize(raw.float())
        used = predicted
        if palette is not None:
            given = pal.normalize(palette.float()).expand(L.shape[0], -1)
            used = given if palette_mask is None else torch.where(palette_mask[:, None], given, predicted)
        ab = self.G(L, palette_feature(used), feats)
        return {"ab": ab, "palette": predicted, "palette_raw": raw}


# -- color discriminator D ---------------------------------------------------------------------------------------
class ProjectionDiscriminator(nn.Module):
    """D: (L ⊕ ab) (B,3,H,W) and palette h (B,256) -> (B,) real/fake score (projection with the palette)."""

    def __init__(self, spectral_norm: bool = True) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        chans = (3, *D_CHANNELS)
        self.convs = nn.Sequential(
            *[nn.Sequential(sn(conv3(chans[i], chans[i + 1], 2)), lrelu()) for i in range(len(D_CHANNELS))]
        )
        self.fc = nn.Sequential(sn(nn.Linear(D_CHANNELS[-1], 256)), lrelu())
        self.psi = sn(nn.Linear(256, 1))
        self.embed = sn(nn.Linear(pal.NUM_BINS, 256))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        phi = self.fc(self.convs(x).mean(dim=(2, 3)))
        proj = (self.embed(palette_feature(h).to(phi.dtype)) * phi).sum(dim=1)
        return self.psi(phi)[:, 0] + proj


# -- the recipe ------------------------------------------------------------------------------------------------
class PalGANRecipe(Recipe):
    """PalGAN: E + G generator (with CA variants), projection discriminator, palette + L1 + hinge losses.

    Loss terms (``models.<name>.loss``; the paper gives no weights, so these are chosen):
    - ``palette`` 1.0: KL(h ‖ ĥ) from the ground-truth histogram h to E's normalised palette ĥ — a
      distribution-to-distribution loss that weighs bins by how much of the image they hold and ignores the
      many empty ones (an L1/BCE on 256 mostly-zero bins would mostly teach "predict zero").
    - ``l1`` 10.0: L1 on ab in the network's scaling (ab/128); the reconstruction that PSNR rewards.
    - ``adv`` 1.0: hinge adversarial loss (Miyato & Koyama's projection discriminator is trained with the
      hinge loss): D minimises mean relu(1 − D(real)) + mean relu(1 + D(fake)), G minimises −mean D(fake).
      l1 : adv = 10 : 1 as in SPADE/pix2pixHD's feature-matching : GAN balance.
    No perceptual term: VGG's classifier stack is not available offline and the paper's weights are unknown.
    """

    arch = "palgan"
    Options = Options
    has_palette = True
    default_loss = {"adv": 1.0, "l1": 10.0, "palette": 1.0}

    def __init__(self, options: Options, loss: dict[str, float], resolution: int) -> None:
        super().__init__(options, loss, resolution)
        if resolution % MULTIPLE or resolution < MULTIPLE:
            raise ValueError(
                f"palgan resolution {resolution}: must be a multiple of {MULTIPLE} (E halves the image 6 times), "
                "e.g. 128 or 256"
            )

    # networks
    def build_generator(self) -> nn.Module:
        o = self.options
        return PalGANGenerator(o.palnorm_hidden, o.attention, o.attention_dim)

    def build_discriminator(self) -> nn.Module:
        return ProjectionDiscriminator(self.options.d_spectral_norm)

    # scaling
    def encode_L(self, L: torch.Tensor) -> torch.Tensor:
        return L / 50.0 - 1.0

    def encode_ab(self, ab: torch.Tensor) -> torch.Tensor:
        return ab / AB_SCALE

    def decode_ab(self, out: torch.Tensor) -> torch.Tensor:
        return out * AB_SCALE

    # palettes
    def palette_target(self, ab: torch.Tensor) -> torch.Tensor:
        """(B,2,H,W) a*b* in Lab units -> (B,256) ground-truth palette (see :mod:`chromapipe.models.palette`)."""
        return pal.palette_histogram(ab, sigma=self.options.palette_sigma)

    def reference_palette(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) sRGB in [0, 1] of a reference photo -> (B,256) palette for ``predict(G, L, palette=…)``."""
        return pal.rgb_palette(rgb01, sigma=self.options.palette_sigma)

    def sample_palettes(
        self, h: torch.Tensor, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """``n`` diverse palettes around ``h`` (B,256) -> (n,B,256); see :func:`palette.sample_palettes`."""
        return pal.sample_palettes(h, n, generator=generator, temperature=temperature)

    # training
    def prepare_batch(self, batch: Batch) -> Batch:
        return {**batch, "palette": self.palette_target(batch["ab"])}

    def generator_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        inputs = {"L": self.encode_L(batch["L"])}
        p = self.options.gt_palette_prob
        if p > 0:
            inputs["palette"] = batch["palette"]
            if p < 1:
                inputs["palette_mask"] = per_sample_rand((batch["L"].shape[0],), batch["L"].device) < p
        return inputs

    def _d(self, D: nn.Module, batch: Batch, ab: torch.Tensor) -> torch.Tensor:
        return D(torch.cat([self.encode_L(batch["L"]), ab], dim=1), batch["palette"])

    def discriminator_loss(
        self, D: nn.Module, batch: Batch, fake: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Logs]:
        real = self._d(D, batch, self.encode_ab(batch["ab"])).float()
        fake_s = self._d(D, batch, fake["ab"].detach()).float()
        d_real, d_fake = F.relu(1 - real).mean(), F.relu(1 + fake_s).mean()
        return d_real + d_fake, {"d_real": losses.scalar(d_real), "d_fake": losses.scalar(d_fake)}

    def generator_loss(self, D: nn.Module, batch: Batch, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Logs]:
        w = self.loss
        adv = -self._d(D, batch, out["ab"]).float().mean()
        l1 = F.l1_loss(out["ab"].float(), self.encode_ab(batch["ab"]).float())
        kl = palette_kl(batch["palette"], out["palette"])
        total = w["adv"] * adv + w["l1"] * l1 + w["palette"] * kl
        return total, {"g_adv": losses.scalar(adv), "g_l1": losses.scalar(l1), "g_palette": losses.scalar(kl)}

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {
            "generator": f"PalGAN E + G (PalNorm hidden {o.palnorm_hidden}, CA {o.attention}); code never released: "
            "built from the supplement's layer lists",
            "discriminator": "projection discriminator with the ground-truth palette"
            + (", spectral norm" if o.d_spectral_norm else ""),
            "weights": "random init; no pretrained parts",
            "scaling": "L/50-1; ab/128 (tanh output x128)",
            "palette": f"256 bins, a*,b* in [{pal.AB_MIN:g}, {pal.AB_MAX:g}) width {pal.BIN_WIDTH:g}, rows = a*; "
            f"sigma {o.palette_sigma}",
            "teacher_forcing": f"G sees the ground-truth palette with p = {o.gt_palette_prob} per sample in training",
        }


def palette_kl(target: torch.Tensor, predicted: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KL(target ‖ predicted) over the 256 bins, batch mean; empty target bins contribute 0."""
    t = target.float()
    q = predicted.float().clamp_min(eps)
    return (torch.where(t > 0, t * (t.clamp_min(eps).log() - q.log()), torch.zeros_like(t))).sum(-1).mean()
