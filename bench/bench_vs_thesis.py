"""Side by side in one process: the thesis's own pix2pix training step vs chromapipe's, same batch, same device.

The thesis's code (github.com/lorenzo-saccaro/image-colorization-classification, PyTorch) is loaded at
run time from a local checkout given on the command line; nothing of it is copied here. Only its
``models.py`` (``Generator``, ``Discriminator``; imports torch and torchvision) and ``losses.py``
(``DiscriminatorCriterion``, ``GeneratorCriterion``; imports torch) are loaded, each under its own module
name with importlib: its ``train.py`` needs tqdm, matplotlib, IPython, kornia and tensorboard, so its
``Trainer._train_epoch`` iteration is re-enacted by :func:`thesis_step` below, operation for operation.

Configuration ① (cGAN with real labels smoothed to 0.9 + 100·L1, no class branch), as the thesis's notebook
``model_training.ipynb`` sets it: ``Generator(in_channels=1, out_channels=2)``, ``Discriminator(in_channels=3,
network_type='patch_gan')``, batch norm (instance norm only at batch 1), ``Adam(lr=2e-4, betas=(0.5, 0.999))`` for
both, N_CRITIC 1, no AMP. Ours: the ``pix2pix`` recipe with the same loss weights, the optimisers
(``bench_train.training_pair``) and ``train_step``. Their iteration differs from ours in two ways that cost time: it
runs the generator forward twice (once with autograd for the D step, again for the G step; ours once) and copies
five losses to the host every iteration (``.detach().cpu()``; ours none).

Timed steps alternate (theirs, ours, theirs, ...) on one fixed batch, each followed by a device sync, so
a change of machine load hits both alike; warm-up steps are excluded. Before timing, their weights are
copied into our networks (same tensors in the same order) and both are run in eval mode on one batch: the
outputs must agree, which checks that the two architectures are the same function.

Ours also runs in the speed options' variants named by ``--variants`` (``plain``; tokens joined by ``-``:
``bf16`` autocast, ``cl`` channels_last, ``compile``, ``graphs``: compiled in torch.compile's
"reduce-overhead" mode, i.e. replayed as CUDA graphs), each a network pair of its own, timed in the same
alternation; theirs runs as their code ships (fp32, NCHW). ``--cudnn-benchmark`` switches cuDNN's autotuner
on for the whole process, i.e. for theirs too (it is a global switch; their code does not set it).

    git clone https://github.com/lorenzo-saccaro/image-colorization-classification /tmp/thesis-repo
    python bench/bench_vs_thesis.py --thesis-repo /tmp/thesis-repo --device cpu --threads 2 --steps 5 --warmup 2
    python bench/bench_vs_thesis.py --thesis-repo /tmp/thesis-repo --device cuda --steps 50 --warmup 10 \
        --cudnn-benchmark --variants plain bf16-cl bf16-cl-compile
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from chromapipe.config import ModelConfig
from chromapipe.models.base import count_parameters
from chromapipe.models.pix2pix import Pix2PixRecipe
from chromapipe.training.performance import (
    apply_performance_options,
    batch_to_channels_last,
    compile_stats,
    count_flops,
)
from chromapipe.training.step import train_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import device_name, training_pair  # noqa: E402

THESIS_URL = "https://github.com/lorenzo-saccaro/image-colorization-classification"
LR, BETAS, L1_WEIGHT, REAL_LABEL = 2e-4, (0.5, 0.999), 100.0, 0.9  # their notebook's configuration ①


# -- their code ------------------------------------------------------------------------------------------------
def load_thesis_module(repo: Path, name: str) -> ModuleType:
    """Import ``<repo>/<name>.py`` as ``thesis_<name>``: no ``sys.path`` change, so their generic module names
    (``models``, ``losses``, ``utils``) cannot shadow or be shadowed by installed packages."""
    path = repo / f"{name}.py"
    if not path.is_file():
        raise SystemExit(f"{path} not found: --thesis-repo must be a checkout of {THESIS_URL}")
    spec = importlib.util.spec_from_file_location(f"thesis_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repo_commit(repo: Path) -> str | None:
    """The checkout's commit; for a copy of the two files without ``.git`` (carried to a GPU machine), the
    commit written beside them in a file ``COMMIT``."""
    marker = repo / "COMMIT"
    try:
        top = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if Path(top).resolve() == repo.resolve():  # not the commit of a repository the copy sits inside
            return subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return marker.read_text().strip() if marker.is_file() else None


class Thesis:
    """Their generator, discriminator, criteria and optimisers for configuration ①."""

    def __init__(self, repo: Path, device: torch.device, batch_size: int) -> None:
        models, losses = load_thesis_module(repo, "models"), load_thesis_module(repo, "losses")
        instance_norm = batch_size == 1  # their notebook: USE_INSTANCE_NORM = BATCH_SIZE == 1
        self.G = models.Generator(
            in_channels=1, out_channels=2, use_instance_norm=instance_norm, classifier_branch=False
        ).to(device)
        self.D = models.Discriminator(
            in_channels=3, use_instance_norm=instance_norm, disable_norm=False, network_type="patch_gan"
        ).to(device)
        self.d_criterion = losses.DiscriminatorCriterion(
            device=device, wgan=False, wgan_gp=False, label_smoothing_value=REAL_LABEL
        )
        self.g_criterion = losses.GeneratorCriterion(
            device=device, wgan=False, l1_lambda=L1_WEIGHT, l2_lambda=0, class_lambda=0
        )
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=LR, betas=BETAS)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=LR, betas=BETAS)


def _requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad = flag


def thesis_step(t: Thesis, x: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """One iteration of their ``Trainer._train_epoch`` (train.py) with N_CRITIC 1, no clipping, no logging:
    G forward; D step on (x, G(x).detach()) and (x, target); G forward again; G step; losses to the host."""
    fake = t.G(x, return_class_out=False)
    _requires_grad(t.D, True)
    t.opt_d.zero_grad()
    fake_preds = t.D(torch.cat([x, fake], dim=1).detach())
    real_preds = t.D(torch.cat([x, target], dim=1))
    d_loss, _ = t.d_criterion(x, real_preds, fake_preds, target, fake, t.D)
    d_loss.backward()
    t.opt_d.step()
    host = [d_loss.detach().cpu()]
    _requires_grad(t.D, False)
    t.opt_g.zero_grad()
    fake, logits = t.G(x, return_class_out=True)
    fake_preds = t.D(torch.cat([x, fake], dim=1))
    gan, recon, cls = t.g_criterion(fake_preds, target, fake, logits, labels)
    g_loss = gan + recon + cls
    g_loss.backward()
    t.opt_g.step()
    host += [g_loss.detach().cpu(), gan.detach().cpu(), recon.detach().cpu(), cls.detach().cpu()]
    return host


# -- ours ------------------------------------------------------------------------------------------------------
def ours_config(resolution: int, batch_size: int) -> ModelConfig:
    return ModelConfig(arch="pix2pix", resolution=resolution, batch_size=batch_size, steps=1,
                       lr_g=LR, lr_d=LR, betas=BETAS,
                       loss={"adv": 1.0, "l1": L1_WEIGHT}, options={"real_label": REAL_LABEL})  # fmt: skip


VARIANT_TOKENS = {"bf16", "cl", "compile", "graphs"}


def parse_variant(name: str) -> dict[str, bool]:
    """``plain`` or ``-``-joined tokens of VARIANT_TOKENS → the speed options it switches on."""
    tokens = set() if name == "plain" else set(name.split("-"))
    if not tokens <= VARIANT_TOKENS:
        raise SystemExit(
            f"--variants: unknown option(s) {sorted(tokens - VARIANT_TOKENS)} in {name!r}; "
            f"use plain or {sorted(VARIANT_TOKENS)} joined by '-'"
        )
    return {
        "amp": "bf16" in tokens,
        "channels_last": "cl" in tokens,
        "compile": bool(tokens & {"compile", "graphs"}),
        "graphs": "graphs" in tokens,
    }


def ours_step(
    cfg: ModelConfig, batch: dict[str, torch.Tensor], device: torch.device, variant: str
) -> Callable[[], object]:
    """A network pair of ours with ``variant``'s options and a closure running one training iteration."""
    opts = parse_variant(variant)
    recipe, nets = training_pair(cfg, device, opts["channels_last"])
    G, D, opt_g, opt_d = nets.G, nets.D, nets.opt_g, nets.opt_d
    mode = "reduce-overhead" if opts["graphs"] else "default"
    for net in (G, D):  # in place: the optimisers keep their parameters
        apply_performance_options(net, channels_last=False, compile=opts["compile"], compile_mode=mode)
    b = batch_to_channels_last(batch) if opts["channels_last"] else batch
    return lambda: train_step(recipe, G, D, opt_g, opt_d, b, True, opts["amp"])


# -- checks and timing -----------------------------------------------------------------------------------------
@torch.no_grad()
def check_same_function(
    theirs: Thesis, G: nn.Module, D: nn.Module, recipe: Pix2PixRecipe, batch: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """Copy their tensors into fresh copies of our networks in state_dict order; compare eval-mode outputs."""
    result: dict[str, Any] = {}
    x = recipe.encode_L(batch["L"])
    for name, their, our in (("generator", theirs.G, G), ("discriminator", theirs.D, D)):
        their_state, our_state = their.state_dict(), our.state_dict()
        shapes_match = [v.shape for v in their_state.values()] == [v.shape for v in our_state.values()]
        result[f"{name}_state_shapes_match"] = shapes_match
        if not shapes_match:
            continue
        copy = (recipe.build_discriminator() if name == "discriminator" else recipe.build_generator()).to(x.device)
        copy.load_state_dict(dict(zip(our_state, their_state.values())))
        copy.eval()
        their.eval()
        if name == "generator":
            a, b = their(x, return_class_out=False), copy(x)["ab"]
        else:
            inp = torch.cat([x, recipe.encode_ab(batch["ab"])], dim=1)
            a, b = their(inp), copy(inp)
        their.train()
        result[f"{name}_max_abs_output_diff"] = float((a - b).abs().max())
    return result


def time_alternating(
    steps: dict[str, Callable[[], object]], n: int, warmup: int, device: torch.device
) -> dict[str, dict[str, list[float]]]:
    """Wall and process-CPU seconds per step for each entry, alternating entries step by step; a device
    sync closes every step. CPU seconds (all threads of this process) are far less inflated by other load
    on a shared machine than wall seconds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in steps}
    for i in range(warmup + n):
        for name, step in steps.items():
            sync()
            t0, cpu0 = time.perf_counter(), time.process_time()
            step()
            sync()
            if i >= warmup:
                times[name]["wall"].append(time.perf_counter() - t0)
                times[name]["cpu"].append(time.process_time() - cpu0)
    return times


def summary(times: dict[str, list[float]], batch_size: int, flops: int) -> dict[str, Any]:
    wall, cpu = times["wall"], times["cpu"]
    return {
        "images_per_s": round(len(wall) * batch_size / sum(wall), 3),
        "seconds_per_step_mean": round(sum(wall) / len(wall), 4),
        "seconds_per_step_median": round(statistics.median(wall), 4),
        "seconds_per_step_all": [round(s, 4) for s in wall],
        "cpu_seconds_per_step_mean": round(sum(cpu) / len(cpu), 4),
        "model_gflops_per_image": round(flops / batch_size / 1e9, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--thesis-repo", type=Path, required=True, help=f"local checkout of {THESIS_URL}")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=8, help="the thesis's batch (8)")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed steps of each")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    ap.add_argument("--out", type=Path, help="default bench/results/vs-thesis-<device>.json")
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["plain"],
        help="our speed-option variants: plain, or bf16/cl/compile joined by '-'",
    )
    ap.add_argument(
        "--cudnn-benchmark", action="store_true", help="cuDNN autotuning for the whole process (theirs too)"
    )
    args = ap.parse_args()
    for variant in args.variants:
        parse_variant(variant)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bs, res = args.batch_size, args.resolution
    load_before = [round(x, 2) for x in os.getloadavg()]

    torch.manual_seed(0)
    theirs = Thesis(args.thesis_repo, device, bs)
    cfg = ours_config(res, bs)
    recipe, nets = training_pair(cfg, device, channels_last=False)
    G, D, opt_g, opt_d = nets.G, nets.D, nets.opt_g, nets.opt_d

    gen = torch.Generator().manual_seed(1)
    batch = {
        "L": (torch.rand(bs, 1, res, res, generator=gen) * 100).to(device),
        "ab": (torch.randn(bs, 2, res, res, generator=gen) * 25).clamp(-128, 127).to(device),
        "label": torch.zeros(bs, dtype=torch.long, device=device),
    }
    x, target = recipe.encode_L(batch["L"]), recipe.encode_ab(batch["ab"])  # the thesis's scaling is ours
    equivalence = check_same_function(theirs, G, D, recipe, {k: v[:2] for k, v in batch.items()})

    step_theirs = lambda: thesis_step(theirs, x, target, batch["label"])  # noqa: E731
    step_ours = lambda: train_step(recipe, G, D, opt_g, opt_d, batch, True, False)  # noqa: E731
    flops = {"thesis": count_flops(step_theirs), "chromapipe": count_flops(step_ours)}
    steps = {"thesis": step_theirs, "chromapipe": step_ours}
    steps |= {f"chromapipe[{v}]": ours_step(cfg, batch, device, v) for v in args.variants if v != "plain"}
    warmup = args.warmup + (
        3 if any(parse_variant(v)["compile"] for v in args.variants) else 0
    )  # compiling: first calls
    times = time_alternating(steps, args.steps, warmup, device)

    result = {
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": "thesis fp32 (it trains without AMP); ours: see variants",
        "variants": {
            name: parse_variant(name[len("chromapipe[") : -1]) if "[" in name else parse_variant("plain")
            for name in steps
            if name != "thesis"
        },
        "cudnn_benchmark": args.cudnn_benchmark,
        "batch_size": bs,
        "resolution": res,
        "steps": args.steps,
        "warmup": args.warmup,
        "thesis_repo": {
            "url": THESIS_URL,
            "commit": repo_commit(args.thesis_repo),
            "loaded": ["models.py: Generator, Discriminator", "losses.py: DiscriminatorCriterion, GeneratorCriterion"],
        },
        "configuration": "thesis (1): cGAN BCE, real label 0.9, + 100*L1; Adam(2e-4, (0.5, 0.999)) for G and D; "
        "N_CRITIC 1; batch norm",
        "parameters": {
            "thesis": {"generator": count_parameters(theirs.G), "discriminator": count_parameters(theirs.D)},
            "chromapipe": {"generator": count_parameters(G), "discriminator": count_parameters(D)},
        },
        "same_function_check": equivalence,
        "torch_compile": compile_stats(),  # the whole process: graph breaks and CUDA graphs not recorded, if any
        "thesis": summary(times["thesis"], bs, flops["thesis"]),
        "chromapipe": summary(times["chromapipe"], bs, flops["chromapipe"]),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": shlex.join(["python", "bench/bench_vs_thesis.py", *sys.argv[1:]]),
    }
    for name in steps:
        if name.startswith("chromapipe["):
            result[name] = summary(times[name], bs, flops["chromapipe"])
            result[f"speedup_{name}_over_thesis"] = round(
                result[name]["images_per_s"] / result["thesis"]["images_per_s"], 3
            )
    result["speedup_chromapipe_over_thesis"] = round(
        result["chromapipe"]["images_per_s"] / result["thesis"]["images_per_s"], 3
    )
    result["speedup_median_step"] = round(
        result["thesis"]["seconds_per_step_median"] / result["chromapipe"]["seconds_per_step_median"], 3
    )
    result["cpu_time_ratio_thesis_over_chromapipe"] = round(
        result["thesis"]["cpu_seconds_per_step_mean"] / result["chromapipe"]["cpu_seconds_per_step_mean"], 3
    )
    out = args.out or Path(f"bench/results/vs-thesis-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(
        json.dumps(
            {
                k: v
                for k, v in result.items()
                if k.startswith(("parameters", "same_function_check", "speedup_", "cpu_time_ratio"))
            },
            indent=1,
        )
    )
    print("thesis", {k: v for k, v in result["thesis"].items() if k != "seconds_per_step_all"})
    for name in steps:
        if name != "thesis":
            print(name, {k: v for k, v in result[name].items() if k != "seconds_per_step_all"})
    print("wrote", out)


if __name__ == "__main__":
    main()
