"""pix2pix colorization with an optional scene-classification branch (Saccaro, Padova thesis 2023).

Facts followed (docs/papers.md#thesis-architecture, #thesis-losses: slides 8–12, the thesis' PyTorch code):
- Generator: 8-level U-Net, encoder 64,128,256,512,512,512,512,512; encoder block Conv 4×4 s2 p1 (no
  bias) → BN → LeakyReLU 0.2, no BN on the first; decoder block ConvTranspose 4×4 s2 p1 (no bias) → BN →
  Dropout 0.5 (first 3 blocks) → ReLU, concatenated with the mirrored encoder output; final
  ConvTranspose (with bias) → tanh, 2 channels (ab). 54,410,882 parameters ("54 M").
- Classification branch: from the 3rd encoder output, 3 more encoder blocks (256→512→512→512) → flatten
  (512·4·4 = 8192 at 256²); fusion Dense 1024 → Dense 512 (LeakyReLU 0.2 after each), broadcast over the
  1×1 bottleneck and concatenated (the first decoder block then takes 1024 channels); head Dense 2048 →
  Dropout → ReLU → Dense 1024 → Dropout → ReLU → Dense num_classes. With 205 classes the whole generator
  has exactly 97,096,015 parameters.
- Discriminator: PatchGAN on concat(L, ab): Conv 4×4 (no bias) 64 s2 (no norm), 128 s2, 256 s2, 512 s1
  (BN, removed for WGAN-GP), LeakyReLU 0.2; Conv 4×4 s1 p1 (bias) → 1 channel: 30×30 logits at 256²
  (70×70 receptive field); exactly 2,765,569 parameters.
- Scaling: L/50 − 1 ∈ [−1, 1]; a, b divided by 127 where positive and 128 where negative.
- Losses: cGAN BCE with one-sided label smoothing (real 0.9), discriminator halves averaged; L1; L2;
  cross-entropy on the scene class; WGAN-GP critic mean(fake) − mean(real) + 10·GP.
  ① pix2pix: adv 1 + l1 100; ② pix2pix_class: + ce 0.003; ③ pix2pix_wgan_class: critic wgan_gp, adv 0.1,
  l1 0, l2 1, ce 0.003 (gp 10, n_critic 5, lr 2e-5 in params).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn

from chromapipe.color import lab_to_rgb
from chromapipe.config import ConfigError
from chromapipe.models import losses
from chromapipe.models.base import Batch, Logs, Recipe, unwrap
from chromapipe.models.randomness import SampleDropout

ENCODER_FILTERS = (64, 128, 256, 512, 512, 512, 512, 512)
DOWNSAMPLING = 2 ** len(ENCODER_FILTERS)  # 256: the input side must be a multiple of this
BRANCH_FROM = 3  # the class branch starts from the 3rd encoder block's output (thesis code: `i == 3` input)
BRANCH_POOL = 4  # spatial side of the class branch's output at 256² (flatten 512·4·4 = 8192)
LEAKY_SLOPE = 0.2


@dataclasses.dataclass(frozen=True)
class Options:
    """``models.<name>.options`` for ``arch: pix2pix``.

    num_classes: 0 = plain pix2pix; > 0 adds the classification branch (205 for Places205; 1000 with
        ``label_source: teacher``).
    critic: ``patchgan_bn`` = PatchGAN with BatchNorm + BCE cGAN loss (configurations ① ②);
        ``wgan_gp`` = the same PatchGAN without normalisation + WGAN-GP loss (configuration ③).
    label_source: ``dataset`` = the batch's class index (label −1 is ignored by the CE term);
        ``teacher`` = pseudo-labels, argmax of a frozen ImageNet classifier on the ground-truth color image
        (for datasets without classes; needs num_classes 1000).
    teacher: the ImageNet classifier used for pseudo-labels.
    real_label: target of real samples in the BCE discriminator loss (one-sided smoothing; 1.0 = none).
    dropout: probability of the decoder's dropout (first 3 decoder blocks) and of the class head's.
    dropout_mode: ``channel`` = ``nn.Dropout2d`` as in the thesis code; ``element`` = ``nn.Dropout`` as in
        the original pix2pix (both as :class:`~chromapipe.models.randomness.SampleDropout`: the same function,
        with masks that do not depend on the number of workers).
    init: ``xavier`` = the thesis code (Xavier-uniform conv weights, BN γ ~ N(1, 0.2)); ``normal`` = the
        original pix2pix (conv weights ~ N(0, 0.02), BN γ ~ N(1, 0.02)).
    """

    num_classes: int = 0
    critic: Literal["patchgan_bn", "wgan_gp"] = "patchgan_bn"
    label_source: Literal["dataset", "teacher"] = "dataset"
    teacher: Literal["efficientnet_lite0"] = "efficientnet_lite0"
    real_label: float = 0.9
    dropout: float = 0.5
    dropout_mode: Literal["channel", "element"] = "channel"
    init: Literal["xavier", "normal"] = "xavier"

    def __post_init__(self) -> None:
        if self.num_classes < 0:
            raise ConfigError(f"options.num_classes: must be >= 0, got {self.num_classes}")
        if self.label_source == "teacher" and self.num_classes != 1000:
            raise ConfigError(
                "options.num_classes: label_source 'teacher' predicts ImageNet classes, so num_classes must be 1000, "
                f"got {self.num_classes}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"options.dropout: must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.real_label <= 1.0:
            raise ConfigError(f"options.real_label: must be in (0, 1], got {self.real_label}")


# -- building blocks -------------------------------------------------------------------------------------------
def encoder_block(c_in: int, c_out: int, norm: bool, stride: int = 2) -> nn.Sequential:
    """Conv 4×4 p1 without bias (BN follows, or the thesis drops it anyway) → [BN] → LeakyReLU 0.2."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1, bias=False)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
    return nn.Sequential(*layers)


def decoder_block(c_in: int, c_out: int, dropout: float, mode: str) -> nn.Sequential:
    """ConvTranspose 4×4 s2 p1 without bias → BN → [Dropout] → ReLU (doubles the spatial size)."""
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if dropout > 0:
        layers.append(SampleDropout(dropout, channelwise=mode == "channel"))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def init_weights(module: nn.Module, scheme: str) -> None:
    """Initialise convolutions and BN (linear layers keep PyTorch's default, as in the thesis' LazyLinear)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.2 if scheme == "xavier" else 0.02)
            nn.init.zeros_(m.bias)


def check_resolution(size: int, what: str = "resolution") -> None:
    if size <= 0 or size % DOWNSAMPLING:
        raise ValueError(
            f"pix2pix {what} {size}: the 8-level U-Net halves the image 8 times, so the side must be a multiple of "
            f"{DOWNSAMPLING} (e.g. 256, 512)"
        )


class ClassBranch(nn.Module):
    """Encoder blocks 4–6 on a parallel track + fusion MLP + classification head (thesis, slide "Architecture").

    Its features are average-pooled to 4×4 before flattening: an identity at 256² (the thesis' setting, so
    the parameter count is the thesis'), and what keeps the dense layers' size independent of resolution.
    """

    def __init__(self, num_classes: int, dropout: float) -> None:
        super().__init__()
        f = ENCODER_FILTERS
        self.convs = nn.Sequential(
            *[encoder_block(f[i - 1], f[i], norm=True) for i in range(BRANCH_FROM, BRANCH_FROM + 3)]
        )
        self.pool = nn.AdaptiveAvgPool2d(BRANCH_POOL)
        flat = f[BRANCH_FROM + 2] * BRANCH_POOL * BRANCH_POOL
        self.fusion = nn.Sequential(
            nn.Linear(flat, 1024), nn.LeakyReLU(LEAKY_SLOPE), nn.Linear(1024, 512), nn.LeakyReLU(LEAKY_SLOPE)
        )
        self.head = nn.Sequential(
            nn.Linear(flat, 2048), SampleDropout(dropout), nn.ReLU(),
            nn.Linear(2048, 1024), SampleDropout(dropout), nn.ReLU(),
            nn.Linear(1024, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder-3 features -> (fusion vector (B, 512), class logits (B, num_classes); None without a head)."""
        flat = self.pool(self.convs(x)).flatten(1)
        return self.fusion(flat), (self.head(flat) if self.head is not None else None)


class UNetGenerator(nn.Module):
    """L (B,1,H,W) in [−1, 1] -> {"ab": (B,2,H,W) in [−1, 1] (tanh), "logits"/"class_probs" with a branch}."""

    def __init__(
        self, num_classes: int = 0, dropout: float = 0.5, dropout_mode: str = "channel", init: str = "xavier"
    ) -> None:
        super().__init__()
        f = ENCODER_FILTERS
        self.encoder = nn.ModuleList(
            [encoder_block(1, f[0], norm=False)] + [encoder_block(f[i - 1], f[i], norm=True) for i in range(1, len(f))]
        )
        self.branch = ClassBranch(num_classes, dropout) if num_classes > 0 else None
        rev = f[::-1]  # 512,512,512,512,512,256,128,64
        blocks = []
        for i in range(len(f) - 1):
            c_in = rev[0] * (2 if self.branch is not None else 1) if i == 0 else 2 * rev[i]
            blocks.append(decoder_block(c_in, rev[i + 1], dropout if i < 3 else 0.0, dropout_mode))
        self.decoder = nn.ModuleList(blocks)
        self.last = nn.ConvTranspose2d(2 * f[0], 2, 4, stride=2, padding=1)
        init_weights(self, init)

    def forward(self, L: torch.Tensor) -> dict[str, torch.Tensor]:
        check_resolution(L.shape[-2], "input height")
        check_resolution(L.shape[-1], "input width")
        skips, x = [], L
        branch_in = None
        for i, block in enumerate(self.encoder):
            if i == BRANCH_FROM:
                branch_in = x
            x = block(x)
            skips.append(x)
        out: dict[str, torch.Tensor] = {}
        if self.branch is not None:
            fused, logits = self.branch(branch_in)
            x = torch.cat([x, fused[:, :, None, None].expand(-1, -1, *x.shape[-2:])], dim=1)
            if logits is not None:
                out["logits"] = logits
                out["class_probs"] = logits.float().softmax(-1)
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            x = torch.cat([block(x), skip], dim=1)
        out["ab"] = torch.tanh(self.last(x))
        return out

    def inference_part(self) -> nn.Module:
        """Everything colorization needs: the class head only feeds the CE loss."""
        parts = nn.ModuleDict({"encoder": self.encoder, "decoder": self.decoder, "last": self.last})
        if self.branch is not None:
            parts["branch_convs"] = self.branch.convs
            parts["fusion"] = self.branch.fusion
        return parts


class PatchGAN(nn.Module):
    """70×70 PatchGAN on concat(L, ab) (3 channels) -> patch logits/scores (B,1,H/8−2,W/8−2)."""

    def __init__(self, norm: bool = True, in_channels: int = 3, init: str = "xavier") -> None:
        super().__init__()
        self.net = nn.Sequential(
            encoder_block(in_channels, 64, norm=False),
            encoder_block(64, 128, norm=norm),
            encoder_block(128, 256, norm=norm),
            encoder_block(256, 512, norm=norm, stride=1),
            nn.Conv2d(512, 1, 4, stride=1, padding=1),
        )
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# -- the recipe ------------------------------------------------------------------------------------------------
class Pix2PixRecipe(Recipe):
    """The thesis' three configurations (① pix2pix, ② pix2pix_class, ③ pix2pix_wgan_class) in one recipe."""

    arch = "pix2pix"
    Options = Options
    default_loss = {"adv": 1.0, "l1": 100.0, "l2": 0.0, "ce": 0.0, "gp": 10.0}

    def __init__(self, options: Options, loss: dict[str, float], resolution: int) -> None:
        super().__init__(options, loss, resolution)
        check_resolution(resolution)
        if self.loss["ce"] > 0 and options.num_classes == 0:
            raise ConfigError(
                "loss.ce: the cross-entropy term needs the classification branch (options.num_classes > 0)"
            )
        self._teacher: nn.Module | None = None

    @property
    def wgan(self) -> bool:
        return self.options.critic == "wgan_gp"

    @property
    def critic_double_backward(self) -> bool:
        """Only the WGAN-GP critic (③) has a gradient penalty; ① and ② keep a ``gp`` weight they never use."""
        return self.wgan and super().critic_double_backward

    # networks
    def build_generator(self) -> nn.Module:
        o = self.options
        return UNetGenerator(o.num_classes, o.dropout, o.dropout_mode, o.init)

    def build_discriminator(self) -> nn.Module:
        return PatchGAN(norm=not self.wgan, init=self.options.init)

    def inference_modules(self, G: nn.Module) -> nn.Module:
        return unwrap(G).inference_part()

    def training_only(self) -> tuple[str, ...]:
        return ("branch.head",) if self.options.num_classes else ()

    def setup(self, device: torch.device) -> None:
        if self._needs_teacher():
            self._get_teacher(device)

    # scaling (thesis code: L/100 normalised to [-1,1]; ab / 127 positive, / 128 negative)
    def encode_L(self, L: torch.Tensor) -> torch.Tensor:
        return L / 50.0 - 1.0

    def encode_ab(self, ab: torch.Tensor) -> torch.Tensor:
        return torch.where(ab > 0, ab / 127.0, ab / 128.0)

    def decode_ab(self, out: torch.Tensor) -> torch.Tensor:
        return torch.where(out > 0, out * 127.0, out * 128.0)

    # pseudo-labels
    def _needs_teacher(self) -> bool:
        return self.options.label_source == "teacher" and self.options.num_classes > 0

    def _get_teacher(self, device: torch.device) -> nn.Module:
        if self._teacher is None:
            from chromapipe.models.teacher import ImageNetTeacher

            self._teacher = ImageNetTeacher(self.options.teacher)
        return self._teacher.to(device)

    def prepare_batch(self, batch: Batch) -> Batch:
        """With ``label_source: teacher``, replace ``label`` by the teacher's argmax on the color image."""
        if not self._needs_teacher():
            return batch
        teacher = self._get_teacher(batch["L"].device)
        rgb = lab_to_rgb(torch.cat([batch["L"], batch["ab"]], dim=1).float())
        return {**batch, "label": teacher(rgb).argmax(dim=-1)}

    # losses
    def _d_input(self, batch: Batch, ab: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.encode_L(batch["L"]), ab], dim=1)

    def discriminator_loss(
        self, D: nn.Module, batch: Batch, fake: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Logs]:
        real_ab = self.encode_ab(batch["ab"])
        if self.wgan:
            return losses.wgan_gp_critic_step(D, self.encode_L(batch["L"]), real_ab, fake["ab"], self.loss["gp"])
        real_out = D(self._d_input(batch, real_ab))
        fake_out = D(self._d_input(batch, fake["ab"].detach()))
        d_real, d_fake = losses.bce_discriminator_loss(real_out, fake_out, self.options.real_label)
        return (d_real + d_fake) / 2, {"d_real": losses.scalar(d_real), "d_fake": losses.scalar(d_fake)}

    def generator_loss(self, D: nn.Module, batch: Batch, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Logs]:
        w = self.loss
        fake_out = D(self._d_input(batch, out["ab"]))
        adv = losses.wgan_generator_loss(fake_out) if self.wgan else losses.bce_generator_loss(fake_out)
        target = self.encode_ab(batch["ab"])
        total = w["adv"] * adv
        logs: Logs = {"g_adv": losses.scalar(adv)}
        if w["l1"] > 0:
            l1 = losses.l1_loss(out["ab"], target)
            total = total + w["l1"] * l1
            logs["g_l1"] = losses.scalar(l1)
        if w["l2"] > 0:
            l2 = losses.l2_loss(out["ab"], target)
            total = total + w["l2"] * l2
            logs["g_l2"] = losses.scalar(l2)
        if "logits" in out:
            # always in the graph (weight 0 included): DDP requires every parameter to receive a gradient
            ce = losses.masked_cross_entropy(out["logits"], batch["label"])
            logs["g_ce"] = losses.scalar(ce)
            total = total + w["ce"] * ce
        return total, logs

    def describe(self) -> dict[str, Any]:
        o = self.options
        info: dict[str, Any] = {
            "generator": "8-level U-Net (thesis)"
            + (f" + class branch ({o.num_classes} classes)" if o.num_classes else ""),
            "discriminator": "PatchGAN 70x70"
            + (" without normalisation (WGAN-GP critic)" if self.wgan else " with BatchNorm"),
            "weights": "random init (" + o.init + "); no pretrained parts",
            "scaling": "L/50-1; ab/127 (positive), ab/128 (negative)",
        }
        if o.num_classes:
            info["label_source"] = o.label_source
            if o.label_source == "teacher":
                teacher = self._teacher
                info["teacher"] = teacher.provenance if teacher is not None else {"name": o.teacher, "loaded": False}
        return info
