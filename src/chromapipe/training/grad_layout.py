"""Gradients laid out as DDP's buckets expect them, so DDP neither warns nor copies.

DDP keeps each parameter's gradient in a flat bucket, viewed with the parameter's strides, and checks every
incoming gradient's strides against that view ("Grad strides do not match bucket view strides ... This may
indicate grad was not created according to the gradient layout contract"); on a mismatch it warns once and
copies the gradient into the bucket on every step. Autograd's layout contract compares strides only on
dimensions of size > 1, so a gradient whose *size-1* dimensions carry other strides passes autograd and
fails DDP's check. That is what a kernel returning a channels-last weight gradient does for a 1×1 convolution
(weight ``(C_out, C_in, 1, 1)``: strides ``(C_in, 1, C_in, C_in)`` instead of ``(C_in, 1, 1, 1)``) — which
oneDNN does or not depending on the CPU it runs on — and PalGAN's attention has such convolutions.

On a size-1 dimension the stride never moves the address, so giving the gradient the parameter's strides there
is a change of metadata only (``as_strided`` on the same memory: no copy). A hook on each parameter with a
size-1 dimension does it before the gradient is accumulated.
"""

from __future__ import annotations

import torch
from torch import nn


def _restride(param: nn.Parameter):  # noqa: ANN202 - a tensor hook
    size, stride = tuple(param.shape), tuple(param.stride())

    def hook(grad: torch.Tensor) -> torch.Tensor:
        if tuple(grad.stride()) == stride or tuple(grad.shape) != size:
            return grad
        if any(g != p for g, p, n in zip(grad.stride(), stride, size) if n != 1):
            return grad  # differs where it matters: autograd's own contract copies it into the param's layout
        return grad.as_strided(size, stride, grad.storage_offset())

    return hook


def align_gradient_strides(module: nn.Module) -> int:
    """Give the gradient of every parameter of ``module`` with a size-1 dimension the parameter's own strides
    (see the module docstring). Call before wrapping in DDP; returns how many parameters got the hook."""
    count = 0
    for param in module.parameters():
        dense = param.is_contiguous() or (param.dim() == 4 and param.is_contiguous(memory_format=torch.channels_last))
        if param.requires_grad and 1 in param.shape and dense:
            param.register_hook(_restride(param))
            count += 1
    return count
