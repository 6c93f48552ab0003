"""One GAN training iteration, independent of Ray: shared by the Ray Train loop and the benchmarks."""

from __future__ import annotations

import torch

from chromapipe.models.base import Batch, Recipe, unwrap


def train_step(recipe: Recipe, G, D, opt_g, opt_d, batch: Batch, g_step: bool, amp: bool) -> dict[str, float]:
    """One iteration: a D update, then (on generator iterations) a G update. Returns the loss logs.

    G runs without autograd on critic-only iterations; in the G update D is called unwrapped (no DDP
    all-reduce for gradients that are thrown away: ``opt_d.zero_grad`` clears them next iteration).
    ``amp`` = bf16 autocast (no loss scaling needed, unlike fp16).
    """
    device_type = batch["L"].device.type
    autocast = lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=amp)  # noqa: E731
    with autocast(), torch.set_grad_enabled(g_step):
        out = G(**recipe.generator_inputs(batch))
    with autocast():
        d_loss, logs = recipe.discriminator_loss(D, batch, {k: v.detach() for k, v in out.items()})
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    logs = {**logs, "d_total": d_loss.item()}
    if g_step:
        with autocast():
            g_loss, g_logs = recipe.generator_loss(unwrap(D), batch, out)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        logs.update(g_logs, g_total=g_loss.item())
    return logs
