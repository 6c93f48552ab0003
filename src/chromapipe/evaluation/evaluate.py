"""The evaluate stage: colorize each evaluation set with a trained generator (or the gray baseline), score it.

Which sets a model is scored on is the evaluation matrix in params (``evaluate.sets``; by default its
training dataset's test split); fixed evaluation sets (``role: eval``, e.g. ImageNet ctest10k) are scored
whole. Each (model, set) gets its own record, whose protocol names the set and the paper's name for it.

Protocol: every model is scored at the stored data resolution in sRGB uint8; with ``evaluate.lab_packed``
also under the thesis' own protocol (``lab_*`` keys: L*a*b* packed as a 3-channel tensor, see
``metrics/lab_packed.py``), recorded beside the sRGB numbers, never instead of them. A model that works at
another resolution (ChromaGAN's 224²) sees L* resized to its resolution; its ab prediction is resized
back and joined with the full-resolution L*, as ChromaGAN's own inference does (``Recipe.predict``).
The gray baseline (ab = 0) is a predictor like any other and is scored by the same loop; it is scored under
the Lab-packed protocol only on the sets where a model it is the reference for is (``Params.lab_packed``).

The thesis scored its generator in train mode (``evaluation/train_mode.py``): with ``evaluate.generator_mode``
``train`` or ``both``, a model under the Lab-packed protocol is also scored so, in a second pass whose numbers
carry the ``_trainmode`` suffix and whose mode the record's protocol states; sRGB numbers are eval-mode only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader
from torchvision.io import write_png
from tqdm import tqdm

from chromapipe.config import Params, to_dict, tracking_uri
from chromapipe.data.manifest import Manifest, read_manifest
from chromapipe.data.shards import LabShardDataset
from chromapipe.devices import resolve_device
from chromapipe.evaluation.train_mode import (
    TRAIN_MODE_SUFFIX,
    generator_in_train_mode,
    ordered_batches,
    train_mode_note,
)
from chromapipe.layout import METRICS_FILE, eval_metric, evaluation_artifact
from chromapipe.metrics.lab_packed import LabPackedSuite
from chromapipe.metrics.record import BASELINE, GRAY, MEASURED, MetricsRecord
from chromapipe.metrics.scoring import Predictor, ScoredBatch, gray_predictor, score_batches
from chromapipe.metrics.suite import MetricReport, MetricSuite
from chromapipe.models.base import Recipe
from chromapipe.models.checkpoint import load_generator
from chromapipe.models.palette import GRID

log = logging.getLogger(__name__)


def _protocol(params: Params, set_name: str, manifest: Manifest, split: str, n_images: int) -> dict[str, Any]:
    d = params.dataset(set_name)
    source = (
        "embedded sample photos"
        if d.source == "sample"
        else Path(d.root or "").name + (f" ({Path(d.file_list).name})" if d.file_list else "")
    )
    return {
        "dataset": set_name,
        "dataset_label": d.label,
        "source": source,
        "role": d.role,
        "split": split,
        "n_images": n_images,
        "n_sources": manifest.split(split).n_sources,
        "resolution": d.size,
        "resize": d.resize + (f" ({d.crops_per_image} crops per photo)" if d.crops_per_image > 1 else ""),
        "color_space": "sRGB uint8 (L*a*b* D65 -> sRGB)",
        "averaging": "mean over images",
    }


def _generator_mode(params: Params, name: str) -> str | None:
    """The record's statement of how the generator ran (None for the gray baseline, which has none)."""
    if name == GRAY:
        return None
    modes = params.generator_modes(name)
    if "train" not in modes:
        return "eval"
    ec = params.evaluate
    which = "eval; Lab-packed metrics also" if "eval" in modes else "eval for sRGB; Lab-packed metrics only"
    return (
        f"{which} in train mode (lab_*{TRAIN_MODE_SUFFIX}: "
        f"{train_mode_note(ec.train_mode_batch_size, ec.train_mode_seed)})"
    )


def _save_png(path: Path, rgb: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(rgb.cpu(), str(path))


class SampleWriter:
    """Keeps the first ``n`` images of an evaluation for the report: predictions under ``samples/``,
    optionally the ground truth under ``ground_truth/`` (written once, by the gray baseline), and for
    models that predict a palette the predicted and ground-truth palettes (``palettes.npz``)."""

    def __init__(self, out_dir: Path, n: int, recipe: Recipe | None, ground_truth: bool) -> None:
        self.out_dir, self.n, self.recipe, self.ground_truth = out_dir, n, recipe, ground_truth
        self.seen = 0
        self.palettes: dict[str, list[np.ndarray]] = {"pred": [], "gt": []}

    def __call__(self, scored: ScoredBatch) -> None:
        keep = min(len(scored.pred_rgb), self.n - self.seen)
        for i in range(max(0, keep)):
            _save_png(self.out_dir / "samples" / f"{self.seen + i:03d}.png", scored.pred_rgb[i])
            if self.ground_truth:
                _save_png(self.out_dir / "ground_truth" / f"{self.seen + i:03d}.png", scored.target_rgb[i])
        if "palette" in scored.prediction and keep > 0 and self.recipe is not None:
            self.palettes["pred"] += list(scored.prediction["palette"][:keep].cpu().numpy())
            self.palettes["gt"] += list(self.recipe.palette_target(scored.ab_true[:keep]).float().cpu().numpy())
        self.seen += len(scored.pred_rgb)

    def close(self) -> None:
        if self.palettes["pred"]:
            grid = lambda hs: np.stack(hs).reshape(len(hs), GRID, GRID)  # noqa: E731
            np.savez(self.out_dir / "palettes.npz", pred=grid(self.palettes["pred"]), gt=grid(self.palettes["gt"]))


def load_predictor(params: Params, name: str, device: torch.device) -> tuple[Predictor, Recipe | None, dict[str, Any]]:
    """(predictor, recipe or None, facts for the record) for model ``name`` or the gray baseline."""
    if name == GRAY:
        return gray_predictor, None, {"arch": GRAY, "kind": BASELINE, "run_id": None}
    recipe, G, info = load_generator(params.layout.generator(name), device)
    ours = list((info["meta"].get("describe") or {}).get("ours") or [])  # what the trained model chose at run time
    return (
        functools.partial(recipe.predict, G),
        recipe,
        {"arch": info["config"].arch, "kind": MEASURED, "run_id": info["meta"].get("run_id"), "ours": ours},
    )


def evaluate_all(
    params: Params, names: list[str] | None = None, device: str = "auto"
) -> dict[str, list[MetricsRecord]]:
    """Score every model in params and the gray baseline (or just ``names``) in one process: the metric
    networks (LPIPS, FID's Inception) are built once for all of them. The baseline also writes the
    ground-truth samples the report shows beside every model's."""
    names = names or [*params.models, GRAY]
    return {name: evaluate(params, name, device, ground_truth=name == GRAY) for name in names}


def evaluate(params: Params, name: str, device: str = "auto", ground_truth: bool = False) -> list[MetricsRecord]:
    """Score model ``name`` (or ``"gray"``: on every evaluated set) on each of its evaluation sets, writing
    ``evaluation/<name>/<set>/metrics.json`` + samples, and ``evaluation/summary/<name>.json`` (the
    numbers alone, per set: what ``dvc metrics`` shows). ``ground_truth``: also save the ground-truth
    samples the report shows beside every model's."""
    dev = resolve_device(device)
    predictor, recipe, facts = load_predictor(params, name, dev)
    sets = params.evaluated_sets() if name == GRAY else params.evaluation_sets(name)
    records = [evaluate_set(params, name, set_name, predictor, recipe, facts, dev, ground_truth) for set_name in sets]
    summary = params.layout.summary(name)
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({r.dataset: r.summary() for r in records}, indent=1))
    return records


def evaluate_set(
    params: Params,
    name: str,
    set_name: str,
    predictor: Predictor,
    recipe: Recipe | None,
    facts: dict[str, Any],
    dev: torch.device,
    ground_truth: bool,
) -> MetricsRecord:
    """Score one predictor on one evaluation set: a train-role dataset's ``evaluate.split``, or every image
    of an eval-role set."""
    ec = params.evaluate
    data_root = params.dataset_dir(set_name)
    manifest = read_manifest(data_root)
    split = ec.split if params.dataset(set_name).role == "train" else "test"
    out_dir = params.layout.evaluation_record(name, set_name)
    dataset = LabShardDataset(data_root, split, limit=ec.max_images)
    if len(dataset) == 0:
        raise RuntimeError(
            f"evaluate: the {split!r} split of dataset {set_name!r} is empty; adjust datasets.{set_name}.splits"
        )
    samples = SampleWriter(out_dir, ec.samples, recipe, ground_truth)
    t0 = time.time()
    eval_lab = params.lab_packed(name, set_name) and (name == GRAY or "eval" in params.generator_modes(name))
    lab = LabPackedSuite(fid=ec.fid, device=dev) if eval_lab else contextlib.nullcontext()
    with MetricSuite(lpips_net=ec.lpips_net, fid=ec.fid, device=dev) as suite, lab as lab_suite:
        batches = tqdm(
            DataLoader(dataset, batch_size=ec.batch_size, shuffle=False),
            desc=f"evaluate {name} on {set_name}",
            unit="batch",
        )

        def on_batch(scored: ScoredBatch) -> None:
            samples(scored)
            if lab_suite is not None:
                lab_suite.update(scored.L, scored.prediction["ab"], scored.ab_true)

        seen = score_batches(predictor, batches, suite, dev, on_batch=on_batch)
        report = MetricReport.combined([suite.compute()] + ([lab_suite.compute()] if lab_suite is not None else []))
    seconds = time.time() - t0
    samples.close()
    timing = {"seconds": round(seconds, 2), "images_per_s": round(seen / max(seconds, 1e-9), 3), "device": str(dev)}
    if recipe is not None and "train" in params.generator_modes(name):
        t1 = time.time()
        report = MetricReport.combined([report, _score_in_train_mode(params, predictor, dataset, dev)])
        timing["train_mode_seconds"] = round(time.time() - t1, 2)
    protocol = _protocol(params, set_name, manifest, split, seen)
    if (mode := _generator_mode(params, name)) is not None:
        protocol["generator_mode"] = mode
    record = MetricsRecord(
        name=name,
        **facts,
        protocol=protocol,
        metrics=report.metrics,
        unavailable=report.unavailable,
        details=report.details,
        timing=timing,
    )
    record.write(out_dir)
    if record.run_id:
        _log_to_mlflow(params, record, out_dir)
    log.info("evaluated %s on %s (%d images): %s", name, set_name, seen, record.summary())
    return record


def _score_in_train_mode(
    params: Params, predictor: Predictor, dataset: LabShardDataset, dev: torch.device
) -> MetricReport:
    """The Lab-packed metrics of the generator in train mode (``evaluation/train_mode.py``), under their
    ``_trainmode`` keys: batches of ``evaluate.train_mode_batch_size`` in stored order, seeded dropout."""
    ec = params.evaluate
    G = predictor.args[0]  # type: ignore[attr-defined] - load_predictor's partial(recipe.predict, G)
    note = train_mode_note(ec.train_mode_batch_size, ec.train_mode_seed)
    loader = DataLoader(dataset, batch_sampler=ordered_batches(len(dataset), ec.train_mode_batch_size))
    with (
        LabPackedSuite(fid=ec.fid, device=dev, suffix=TRAIN_MODE_SUFFIX, generator_mode=note) as suite,
        generator_in_train_mode(G, ec.train_mode_seed),
        torch.no_grad(),
    ):
        for batch in tqdm(loader, desc="evaluate in train mode", unit="batch"):
            L, ab_true = batch["L"].to(dev), batch["ab"].to(dev)
            suite.update(L, predictor(L)["ab"], ab_true)
        return suite.compute()


def _log_to_mlflow(params: Params, record: MetricsRecord, out_dir: Path) -> None:
    client = MlflowClient(tracking_uri(params))
    for key, value in record.summary().items():
        if key != "n_images":
            client.log_metric(record.run_id, eval_metric(record.dataset, key), float(value))
    client.log_dict(record.run_id, record.to_json(), evaluation_artifact(record.dataset, METRICS_FILE))
    client.log_dict(record.run_id, to_dict(params.evaluate), evaluation_artifact("", "params.json"))
    for png in sorted((out_dir / "samples").glob("*.png")):
        client.log_artifact(record.run_id, str(png), artifact_path=evaluation_artifact(record.dataset, "samples"))
