"""Loss functions shared by the recipes (pix2pix, ChromaGAN, PalGAN).

Kept free of any one recipe's scaling or network so each paper's loss can be assembled from the same,
separately tested pieces: the GAN objectives (BCE with one-sided label smoothing, WGAN), the WGAN-GP
gradient penalty, reconstruction terms and the class-distribution KL divergence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from chromapipe.models.randomness import per_sample_rand

Tensor = torch.Tensor


# -- standard GAN (binary cross-entropy on logits) -----------------------------------------------------------
def bce_with_target(logits: Tensor, target: float) -> Tensor:
    """Mean BCE of ``logits`` against the constant ``target`` (1 = real, 0 = fake, 0.9 = smoothed real)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(target)))


def bce_discriminator_loss(real_logits: Tensor, fake_logits: Tensor, real_label: float = 0.9) -> tuple[Tensor, Tensor]:
    """The two halves of the cGAN discriminator loss (real, fake).

    One-sided label smoothing (Salimans et al. 2016; the thesis uses real = 0.9): only the real target is
    softened, so an over-confident discriminator is penalised without rewarding it for calling fakes real.
    The thesis averages the halves: ``(real + fake) / 2``.
    """
    return bce_with_target(real_logits, real_label), bce_with_target(fake_logits, 0.0)


def bce_generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: BCE of D(fake) against the (unsmoothed) real label 1."""
    return bce_with_target(fake_logits, 1.0)


# -- Wasserstein GAN ---------------------------------------------------------------------------------------------
def wgan_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """WGAN critic loss ``mean D(fake) - mean D(real)`` (Arjovsky et al. 2017), minimised by the critic."""
    return fake_scores.float().mean() - real_scores.float().mean()


def wgan_generator_loss(fake_scores: Tensor) -> Tensor:
    """WGAN generator loss ``-mean D(fake)`` (ChromaGAN's Keras code: weight -0.1 on mean D(fake))."""
    return -fake_scores.float().mean()


def _as_list(x: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [x] if isinstance(x, Tensor) else list(x)


def gradient_penalty(
    critic: Callable[..., Tensor],
    real: Tensor | Sequence[Tensor],
    fake: Tensor | Sequence[Tensor],
    *,
    alpha: Tensor | None = None,
    target: float = 1.0,
    eps: float = 1e-12,
) -> Tensor:
    """WGAN-GP penalty ``E[(||grad_x critic(x)||_2 - target)^2]`` at random interpolates (Gulrajani et al. 2017).

    Unweighted: callers multiply by their ``gp`` weight (10 in every paper here). ``real`` and ``fake`` may be
    one tensor or matching sequences (e.g. PalGAN's image and palette): every tensor of a sample is
    interpolated with the same ``alpha`` and the gradient norm is taken over all of them together. The
    critic is called as ``critic(*interpolates)``; bind conditioning inputs (the L channel) with a closure,
    as both reference implementations differentiate w.r.t. the generated part only. A critic with a
    patch map output is differentiated through the sum of its outputs (``grad_outputs = ones`` in the
    thesis code, ``K.gradients`` in ChromaGAN's). ``eps`` keeps the norm differentiable at 0.
    """
    reals, fakes = _as_list(real), _as_list(fake)
    if len(reals) != len(fakes):
        raise ValueError(f"gradient_penalty: {len(reals)} real tensors but {len(fakes)} fake tensors")
    batch = reals[0].shape[0]
    if alpha is None:
        alpha = per_sample_rand((batch,), reals[0].device)  # per sample, the same whatever the number of workers
    points = []
    for r, f in zip(reals, fakes):
        a = alpha.to(r.dtype).view(batch, *([1] * (r.dim() - 1)))
        points.append((a * r.detach() + (1 - a) * f.detach()).requires_grad_(True))
    scores = critic(*points)
    grads = torch.autograd.grad(scores.float().sum(), points, create_graph=True)
    sq = sum(g.float().pow(2).flatten(1).sum(1) for g in grads)
    norm = torch.sqrt(sq + eps)
    return ((norm - target) ** 2).mean()


# -- reconstruction and class terms ----------------------------------------------------------------------------
def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    return F.l1_loss(pred.float(), target.float())


def l2_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error (the thesis' L2 and ChromaGAN's Keras ``mse``)."""
    return F.mse_loss(pred.float(), target.float())


def kl_divergence(target_probs: Tensor, log_probs: Tensor, eps: float = 1e-7) -> Tensor:
    """``KL(target || model)`` summed over classes, averaged over the batch.

    The direction of Keras' ``kld(y_true, y_pred)`` that ChromaGAN trains with: the teacher's distribution is
    the target, the model's ``log_probs`` (log-softmax of its logits, for stability) the prediction. Target
    probabilities are clamped at ``eps`` as Keras does, so zero-probability classes contribute 0.
    """
    t = target_probs.float().clamp(min=eps, max=1.0)
    return (t * (t.log() - log_probs.float())).sum(dim=-1).mean()


def masked_cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int = -1) -> Tensor:
    """Cross-entropy over samples whose label is not ``ignore_index``; 0 (with a graph) when none has one.

    Datasets without classes carry label -1; plain ``F.cross_entropy`` would return NaN for such a batch.
    Written without data-dependent branching or indexing, so it never waits for the device (no host sync).
    """
    valid = (labels != ignore_index).float()
    per_sample = F.cross_entropy(logits.float(), labels.clamp_min(0), reduction="none")
    return (per_sample * valid).sum() / valid.sum().clamp_min(1.0)


def scalar(t: Tensor) -> Tensor:
    """A loss value for the logs: detached (logging never touches the autograd graph) and left on its
    device — the trainer reads all logs in one host synchronisation on the steps it logs, not every step."""
    return t.detach().float()


def wgan_gp_critic_step(
    D: nn.Module, L: Tensor, real_ab: Tensor, fake_ab: Tensor, gp_weight: float
) -> tuple[Tensor, dict[str, float]]:
    """The WGAN-GP critic loss of a conditional critic on concat(L, ab), shared by pix2pix ③ and ChromaGAN.

    ``D`` may be DDP-wrapped for the real/fake scores; the penalty goes through the plain module (double
    backward through DDP's reducer is not supported). Only the ab channels are interpolated: L is the
    condition, identical in both halves.
    """
    real_out = D(torch.cat([L, real_ab], dim=1))
    fake_out = D(torch.cat([L, fake_ab.detach()], dim=1))
    plain = D.module if isinstance(D, nn.parallel.DistributedDataParallel) else D
    gp = gradient_penalty(lambda ab: plain(torch.cat([L, ab], dim=1)), real_ab, fake_ab)
    wd = wgan_critic_loss(real_out, fake_out)
    logs = {
        "d_real": scalar(real_out.float().mean()),
        "d_fake": scalar(fake_out.float().mean()),
        "d_wgan": scalar(wd),
        "d_gp": scalar(gp),
    }
    return wd + gp_weight * gp, logs
