"""ChromaGAN (Vitoria, Raad, Ballester, WACV 2020): adversarial colorization with class-distribution learning.

Facts followed (docs/papers.md#chromagan-architecture and #chromagan-losses: the paper §3, the authors' Keras code):
- Input 224×224, L tiled to 3 channels. Scaling is OpenCV's 8-bit Lab then /255: L·255/100/255 = L/100,
  (a + 128)/255, (b + 128)/255; the ab output goes through a sigmoid, so targets live in [0, 1].
- Generator: VGG16 up to block4_conv3 (+ReLU): 28×28×512, ImageNet-initialised and trainable.
  Global branch: 4 × (Conv 3×3 512, strides 2,1,2,1, ReLU, BN) → 7×7×512 → flatten; colour path
  Dense 1024 → 512 → 256 repeated over 28×28; class path Dense 4096 → 4096 → 1000 softmax.
  Mid-level branch: Conv 3×3 512 → 256 (each ReLU, BN). Fusion: concat (256 + 256) → Conv 1×1 256 →
  Conv 3×3 128 → up ×2 → Conv 64, 64 → up ×2 → Conv 32 → Conv 2 (sigmoid) → up ×2 → 224×224.
  As in the Keras code: conv → ReLU → BN order, no activations between the Dense layers, nearest
  up-sampling.
- Critic: PatchGAN without normalisation on concat(L, ab): Conv 4×4 64, 128, 256 (s2), 512 (s1) with
  LeakyReLU (Keras default slope 0.3), Conv 4×4 → 1 channel; "same" padding: 28×28 scores at 224².
- Loss: G = 1.0·MSE(ab) + 0.003·KL(teacher ‖ model class distribution) − 0.1·mean D(fake); critic =
  mean D(fake) − mean D(real) + 10·GP (Keras code: loss weights [1.0, 0.003, −0.1], GP weight 10).
  The paper's ablation rows are loss settings: "ChromaGAN w/o Class" is kl = 0, "ChromaNet" adv = 0.
  The teacher sees the gray image tiled to 3 channels (paper §3.1): VGG16 when its classifier weights are in
  the weights cache, EfficientNet-Lite0 otherwise (``options.teacher``, see teacher.py; ``describe()`` lists
  the stand-in under ``ours``).
- Initialisation as Keras' defaults, which the authors' code kept for every layer not loaded from VGG16:
  Glorot-uniform kernels and zero biases (conv and dense layers of the generator and the critic), and
  BatchNormalization(momentum=0.99, epsilon=1e-3), i.e. PyTorch momentum 0.01 and eps 1e-3 (``options.init``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from chromapipe.color import lab_to_rgb
from chromapipe.config import ConfigError
from chromapipe.models import losses
from chromapipe.models.base import Batch, Logs, Recipe, unwrap
from chromapipe.models.teacher import TeacherChoice
from chromapipe.weights import WeightsUnavailable, vgg16_features_state_dict

RESOLUTION = 224  # fixed by the dense layers (7×7×512 flatten) and the 28×28 RepeatVector
VGG_LAYERS = 23  # torchvision vgg16().features[:23] ends with block4_conv3 + ReLU (Keras layers[-6])
NUM_CLASSES = 1000
KERAS_LEAKY_SLOPE = 0.3  # keras.layers.LeakyReLU() default alpha, used by ChromaGAN's critic


@dataclasses.dataclass(frozen=True)
class Options:
    """``models.<name>.options`` for ``arch: chromagan``.

    backbone_weights: ``imagenet`` = VGG16 conv weights from ``chromapipe.weights``; building the generator
        stops with a clear error when they are not available locally (never downloaded, never silently
        replaced by random weights); ``random`` = random init on purpose.
    teacher: the frozen ImageNet classifier providing the KL target (run on the gray input tiled to RGB):
        ``auto`` = VGG16 (the paper's) when its classifier weights are in the weights cache, else
        EfficientNet-Lite0 (recorded as ours); or either by name.
    teacher_input: the picture the teacher classifies. ``gray_srgb`` = the gray image (L, a* = b* = 0) as sRGB
        through the teacher's own preprocessing (what the paper describes); ``authors_code`` = what the authors'
        Keras code fed VGG16: L/255·255/100 in [0, 1] tiled to 3 channels without ``preprocess_input``, which
        Keras' VGG16 reads as mean-subtracted 0-255 pixels — the ImageNet mean colour plus the gray image at
        1/255 of its contrast; that picture (in 0-255 sRGB) goes through the teacher's own preprocessing.
    init: ``keras`` = the initialisation and BatchNorm constants of the authors' Keras code for every layer not
        loaded from VGG16 (Glorot-uniform, zero bias; BN momentum 0.01 in PyTorch terms, eps 1e-3);
        ``pytorch`` = PyTorch's defaults.
    critic_slope: LeakyReLU slope of the critic (0.3 = Keras' default in the authors' code).
    """

    backbone_weights: Literal["imagenet", "random"] = "imagenet"
    teacher: TeacherChoice = "auto"
    teacher_input: Literal["gray_srgb", "authors_code"] = "gray_srgb"
    init: Literal["keras", "pytorch"] = "keras"
    critic_slope: float = KERAS_LEAKY_SLOPE

    def __post_init__(self) -> None:
        if not 0.0 <= self.critic_slope < 1.0:
            raise ConfigError(f"options.critic_slope: must be in [0, 1), got {self.critic_slope}")


KERAS_BN_MOMENTUM = 0.01  # Keras BatchNormalization(momentum=0.99): moving = 0.99·moving + 0.01·batch
KERAS_BN_EPS = 1e-3
#: ImageNet's mean colour in 0-255 RGB, as Keras' VGG16 ``preprocess_input`` ("caffe" mode) subtracts it
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


def keras_init_(module: nn.Module) -> None:
    """Keras' defaults on every conv, dense and BatchNorm layer of ``module``, in place: Glorot-uniform kernels
    (fan in/out over the kernel's receptive field, as Keras computes them), zero biases, BN weight 1, bias 0,
    momentum 0.01 (Keras 0.99) and eps 1e-3. Safe on the meta device (shapes only)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.momentum, m.eps = KERAS_BN_MOMENTUM, KERAS_BN_EPS
            m.reset_parameters()


def conv_relu_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """Keras ``Conv2D(3×3, 'same', activation='relu')`` followed by ``BatchNormalization`` (ChromaGAN's order)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c_out)
    )


def conv_relu(c_in: int, c_out: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU(inplace=True))


def vgg16_backbone() -> nn.Sequential:
    """torchvision VGG16 ``features[:23]``: conv1_1 … conv4_3 + ReLU, 7,635,264 parameters, stride 8.

    Built with torchvision's own ``make_layers`` and VGG's init (Kaiming-normal fan-out, zero bias), the
    same module and state-dict keys as ``vgg16(weights=None).features[:23]`` without constructing (and
    initialising) the 124 M-parameter classifier that would be thrown away.
    """
    features = make_layers(vgg_cfgs["D"], batch_norm=False)[:VGG_LAYERS]
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return features


def load_backbone_weights(backbone: nn.Sequential) -> dict[str, Any]:
    """Load ImageNet conv weights into the backbone; returns provenance (raises WeightsUnavailable)."""
    state, prov = vgg16_features_state_dict()
    state = {k.removeprefix("features."): v for k, v in state.items()}  # keys as in vgg16().features
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise WeightsUnavailable("vgg16_features", f"state dict lacks {missing[:3]}")
    backbone.load_state_dict({k: state[k] for k in own})
    return dict(prov)


class ChromaGANGenerator(nn.Module):
    """L tiled to (B,3,224,224) in [0,1] -> {"ab" (B,2,224,224) in [0,1], "logits", "class_probs" (B,1000)}."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = vgg16_backbone()
        self.global_convs = nn.Sequential(
            conv_relu_bn(512, 512, 2), conv_relu_bn(512, 512), conv_relu_bn(512, 512, 2), conv_relu_bn(512, 512)
        )
        flat = 512 * 7 * 7
        self.global_dense = nn.Sequential(nn.Linear(flat, 1024), nn.Linear(1024, 512), nn.Linear(512, 256))
        self.class_head = nn.Sequential(nn.Linear(flat, 4096), nn.Linear(4096, 4096), nn.Linear(4096, NUM_CLASSES))
        self.mid = nn.Sequential(conv_relu_bn(512, 512), conv_relu_bn(512, 256))
        up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fusion = nn.Sequential(
            conv_relu(512, 256, k=1), conv_relu(256, 128),
            up, conv_relu(128, 64), conv_relu(64, 64),
            up, conv_relu(64, 32), nn.Conv2d(32, 2, 3, padding=1), nn.Sigmoid(),
            up,
        )  # fmt: skip

    def forward(self, L: torch.Tensor) -> dict[str, torch.Tensor]:
        if L.shape[-2:] != (RESOLUTION, RESOLUTION) or L.shape[1] != 3:
            raise ValueError(f"ChromaGAN expects L tiled to (B, 3, {RESOLUTION}, {RESOLUTION}), got {tuple(L.shape)}")
        feats = self.backbone(L)  # (B, 512, 28, 28)
        g = self.global_convs(feats).flatten(1)  # (B, 25088)
        glob = self.global_dense(g)[:, :, None, None].expand(-1, -1, *feats.shape[-2:])
        ab = self.fusion(torch.cat([self.mid(feats), glob], dim=1))
        if self.class_head is None:  # a generator file: the class head only served the KL loss
            return {"ab": ab}
        logits = self.class_head(g)
        return {"ab": ab, "logits": logits, "class_probs": logits.float().softmax(-1)}

    def inference_part(self) -> nn.Module:
        """The colorization path: the class head only serves the KL loss."""
        return nn.ModuleDict(
            {k: getattr(self, k) for k in ("backbone", "global_convs", "global_dense", "mid", "fusion")}
        )


def same_conv4(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    """Keras ``Conv2D(4×4, padding='same')``: pad 1/1 at stride 2 (even input), 1 before / 2 after at stride 1.

    Explicit zero padding instead of ``padding='same'``, which PyTorch only allows at stride 1 and which
    copies the input for even kernels anyway.
    """
    pad = (1, 1, 1, 1) if stride == 2 else (1, 2, 1, 2)
    return [nn.ZeroPad2d(pad), nn.Conv2d(c_in, c_out, 4, stride=stride)]


class ChromaGANCritic(nn.Module):
    """PatchGAN without normalisation on concat(L, ab) (3 channels) -> (B,1,H/8,W/8) scores."""

    def __init__(self, slope: float = KERAS_LEAKY_SLOPE, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for c_out, stride in ((64, 2), (128, 2), (256, 2), (512, 1)):
            layers += [*same_conv4(c, c_out, stride), nn.LeakyReLU(slope, inplace=True)]
            c = c_out
        layers += same_conv4(c, 1, 1)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ChromaGANRecipe(Recipe):
    arch = "chromagan"
    Options = Options
    default_loss = {"mse": 1.0, "kl": 0.003, "adv": 0.1, "gp": 10.0}

    def __init__(self, options: Options, loss: dict[str, float], resolution: int) -> None:
        super().__init__(options, loss, resolution)
        if resolution != RESOLUTION:
            raise ValueError(
                f"chromagan resolution {resolution}: the architecture is fixed at {RESOLUTION}x{RESOLUTION} "
                f"(dense layers on VGG16's 7x7x512 features); set models.<name>.resolution: {RESOLUTION}"
            )
        self._teacher: nn.Module | None = None
        self._teacher_fallback: str | None = None
        self._backbone_info: dict[str, Any] = {"weights": "not built yet"}

    # networks
    def _init(self, module: nn.Module) -> None:
        if self.options.init == "keras":
            keras_init_(module)

    def build_generator(self) -> nn.Module:
        G = ChromaGANGenerator()
        for name, part in G.named_children():  # every branch but the VGG16 backbone
            if name != "backbone":
                self._init(part)
        if self.options.backbone_weights == "random":
            self._init(G.backbone)  # Keras' VGG16(weights=None) is Glorot-initialised too
            self._backbone_info = {"weights": "random", "reason": "options.backbone_weights: random"}
            return G
        if next(G.backbone.parameters()).is_meta:  # shape-only build (e.g. `chromapipe models`)
            self._backbone_info = {"weights": "not loaded (meta device)"}
            return G
        try:
            prov = load_backbone_weights(G.backbone)
        except WeightsUnavailable as exc:
            raise WeightsUnavailable(
                "vgg16_features",
                f"{exc.reason}. ChromaGAN's backbone starts from ImageNet VGG16 weights (options.backbone_weights: "
                "imagenet): run `chromapipe weights fetch`, or set options.backbone_weights: random to train "
                "from scratch",
            ) from exc
        self._backbone_info = {"weights": "imagenet", **prov}
        return G

    def build_discriminator(self) -> nn.Module:
        D = ChromaGANCritic(self.options.critic_slope)
        self._init(D)
        return D

    def inference_modules(self, G: nn.Module) -> nn.Module:
        return unwrap(G).inference_part()

    def training_only(self) -> tuple[str, ...]:
        return ("class_head",)

    def setup(self, device: torch.device) -> None:
        if self.loss["kl"] > 0:
            self._get_teacher(device)

    # scaling: OpenCV 8-bit Lab (L·255/100, a+128, b+128) divided by 255
    def encode_L(self, L: torch.Tensor) -> torch.Tensor:
        return (L / 100.0).repeat(1, 3, 1, 1)

    def encode_ab(self, ab: torch.Tensor) -> torch.Tensor:
        return (ab + 128.0) / 255.0

    def decode_ab(self, out: torch.Tensor) -> torch.Tensor:
        return out * 255.0 - 128.0

    # teacher target
    def _get_teacher(self, device: torch.device) -> nn.Module:
        if self._teacher is None:
            from chromapipe.models.teacher import ImageNetTeacher, resolve_teacher

            name, self._teacher_fallback = resolve_teacher(self.options.teacher)
            self._teacher = ImageNetTeacher(name)
        return self._teacher.to(device)

    def teacher_picture(self, L: torch.Tensor) -> torch.Tensor:
        """The sRGB [0, 1] picture the teacher classifies for L* (B,1,H,W) (``options.teacher_input``)."""
        L = L.float()
        if self.options.teacher_input == "authors_code":  # Keras' VGG16 saw (mean + L/100) as its 0-255 pixels
            mean = torch.tensor(CAFFE_MEAN_RGB, device=L.device).view(1, 3, 1, 1)
            return (mean + L / 100.0) / 255.0
        return lab_to_rgb(torch.cat([L, torch.zeros_like(L).expand(-1, 2, -1, -1)], dim=1))

    def prepare_batch(self, batch: Batch) -> Batch:
        """Add ``teacher_probs``: the teacher's class distribution on the gray picture (:meth:`teacher_picture`)."""
        if self.loss["kl"] <= 0:
            return batch
        L = batch["L"]
        return {**batch, "teacher_probs": self._get_teacher(L.device)(self.teacher_picture(L))}

    # losses
    def _d_input(self, batch: Batch, ab: torch.Tensor) -> torch.Tensor:
        return torch.cat([batch["L"] / 100.0, ab], dim=1)

    def discriminator_loss(
        self, D: nn.Module, batch: Batch, fake: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Logs]:
        return losses.wgan_gp_critic_step(
            D, batch["L"] / 100.0, self.encode_ab(batch["ab"]), fake["ab"], self.loss["gp"]
        )

    def generator_loss(self, D: nn.Module, batch: Batch, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Logs]:
        w = self.loss
        adv = losses.wgan_generator_loss(D(self._d_input(batch, out["ab"])))
        mse = losses.l2_loss(out["ab"], self.encode_ab(batch["ab"]))
        total = w["mse"] * mse + w["adv"] * adv
        logs: Logs = {"g_mse": losses.scalar(mse), "g_adv": losses.scalar(adv)}
        if w["kl"] > 0:
            if "teacher_probs" not in batch:
                raise KeyError("batch lacks teacher_probs: call recipe.prepare_batch(batch) before generator_loss")
            kl = losses.kl_divergence(batch["teacher_probs"], F.log_softmax(out["logits"].float(), dim=-1))
            total = total + w["kl"] * kl
            logs["g_kl"] = losses.scalar(kl)
        else:  # keep the class head in the graph: DDP requires every parameter to receive a gradient
            total = total + 0.0 * out["logits"].float().sum()
        return total, logs

    def describe(self) -> dict[str, Any]:
        o = self.options
        init = (
            "Keras defaults (Glorot-uniform, zero bias; BN momentum 0.01, eps 1e-3)"
            if o.init == "keras"
            else "PyTorch defaults"
        )
        info: dict[str, Any] = {
            "backbone": {"requested": o.backbone_weights, **self._backbone_info},
            "scaling": "L/100 tiled to 3 channels; (ab+128)/255; sigmoid output",
            "init": f"layers not loaded from VGG16: {init}",
        }
        ours = [] if o.init == "keras" else [f"options.init: {init}, not the authors' Keras defaults"]
        if self.loss["kl"] > 0:
            t = self._teacher
            info["teacher"] = t.provenance if t is not None else {"name": o.teacher, "loaded": False}
            info["teacher_input"] = {
                "gray_srgb": "gray image (L, a*=0, b*=0) as sRGB, the teacher's own preprocessing",
                "authors_code": "the authors' code: ImageNet mean colour + L/100 as 0-255 sRGB (Keras VGG16 fed "
                "[0, 1] without preprocess_input), the teacher's own preprocessing",
            }[o.teacher_input]
            if self._teacher_fallback:
                ours.append(f"KL teacher: EfficientNet-Lite0 instead of the paper's VGG16 ({self._teacher_fallback})")
            elif t is not None and getattr(t, "name", "") == "vgg16":
                ours.append("KL teacher: torchvision's ImageNet VGG16 weights (the authors used Keras' VGG16 weights)")
            elif t is not None:
                ours.append("KL teacher: EfficientNet-Lite0 instead of the paper's VGG16 (options.teacher)")
        if ours:
            info["ours"] = ours
        return info
