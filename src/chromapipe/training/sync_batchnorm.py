"""BatchNorm statistics over the global batch when several workers train one model (``train.sync_batchnorm``).

Why: with plain DDP every BatchNorm layer normalises over its own worker's ``batch_size / N`` images, so the
function being trained changes with the number of workers — at the thesis' global batch 8 on 8 GPUs, over a
single image, where the U-Net's 1×1 bottleneck has nothing left to normalise. Synchronised BatchNorm computes
the mean and variance over all workers' images, which is what one worker computes on the global batch.

On GPUs that is ``torch.nn.SyncBatchNorm`` (NCCL, fused CUDA kernels). It refuses CPU tensors, so on CPU/gloo
(development machines, the test suite) :class:`AllReduceBatchNorm` does the same sums with two differentiable
all-reduces: the batch's sum (and count), then the sum of squared deviations from the global mean. The
backward pass all-reduces the gradients of those sums, exactly as SyncBatchNorm's backward does, so input and
parameter gradients are those of BatchNorm on the concatenated global batch (tested against
``nn.BatchNorm2d`` on it). Both keep the BatchNorm's parameters, buffers and state-dict keys, so checkpoints
and exported generators do not depend on whether training was synchronised.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over the process group, differentiable: the gradient of a sum every rank sees is the sum of every
    rank's gradient (backward is the same all-reduce, itself differentiable, so a double backward works too)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return _AllReduceSum.apply(grad.contiguous())


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


class AllReduceBatchNorm(_BatchNorm):
    """BatchNorm (any input rank ≥ 2) whose training statistics cover every rank's batch (gloo or any backend).

    In eval mode, or outside a process group of more than one rank, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1, *([1] * (x.dim() - 2))]
        xf = x.float()  # statistics in float32, as BatchNorm under autocast
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=torch.float32)
        totals = all_reduce(torch.cat([xf.sum(dims), count]))
        n = totals[-1]
        mean = totals[:-1] / n
        centered = xf - mean.view(shape)
        var = all_reduce(centered.pow(2).sum(dims)) / n  # biased: what the batch is normalised with
        y = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n.detach())
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        """As ``_BatchNorm`` does: momentum (or a cumulative average when momentum is None); the running
        variance is the unbiased one over the global batch."""
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (n / (n - 1).clamp(min=1))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def _replaced(bn: _BatchNorm, cls: type[_BatchNorm]) -> _BatchNorm:
    new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    if bn.affine:
        with torch.no_grad():
            new.weight = bn.weight
            new.bias = bn.bias
    if bn.track_running_stats:
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
    new.train(bn.training)
    return new


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer of ``module`` synchronised across the process group: ``nn.SyncBatchNorm`` on a
    GPU, :class:`AllReduceBatchNorm` elsewhere. Call before moving to the device, compiling and wrapping in DDP;
    returns the converted module (the same object unless ``module`` itself is a BatchNorm)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, AllReduceBatchNorm):
        return _replaced(module, AllReduceBatchNorm)
    for name, child in module.named_children():
        converted = convert_sync_batchnorm(child, device)
        if converted is not child:
            setattr(module, name, converted)
    return module


def count_batchnorms(module: nn.Module) -> int:
    """How many BatchNorm layers ``module`` has (what synchronising changes; 0: nothing to synchronise)."""
    return sum(isinstance(m, _BatchNorm) for m in module.modules())
