"""The colorize command's loop over files: decode → batch → :class:`~chromapipe.inference.colorizer.Colorizer`
→ write, reporting each failure.

The per-image work (decode, the network's L* input, ``Recipe.predict``, the full-resolution render) is the
Colorizer's — the same object the Python API and the MLflow model use, so the command writes the pixels a
``Colorizer`` returns. What is the command's own: finding the files, batching their network inputs across
files, naming and writing outputs (format and metadata follow the input), and reporting.

Files are decoded one at a time and batched only for the network: a batch holds the decoded integer
pixels of at most ``--batch-size`` images and at most :data:`BATCH_BYTES` of them, so memory does not
scale with the batch size on large photos. A file that fails is reported and skipped; the exit code is
0 when every file succeeded, 1 when some failed, 2 for usage errors (no or missing model, bad options).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from chromapipe.inference.colorizer import Colorizer, resolve_device, uses_device_path  # noqa: F401 (re-exported)
from chromapipe.inference.conditioning import Conditioning
from chromapipe.inference.io import (
    DecodedImage,
    InputError,
    Job,
    find_images,
    output_suffix,
    wants_padding,
    write_image,
)
from chromapipe.inference.source import GeneratorSource, UsageError

log = logging.getLogger("chromapipe.colorize")

#: decoded pixels held for one network batch (a 24 MP RGB photo is 72 MB), in host or device memory
BATCH_BYTES = 256 * 1024 * 1024


@dataclasses.dataclass
class Pending:
    job: Job
    image: DecodedImage
    L: torch.Tensor  # (1, R, R) network input, L* in [0, 100], on the pixels' device


@dataclasses.dataclass
class Summary:
    total: int = 0
    written: list[Path] = dataclasses.field(default_factory=list)
    failed: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    done: int = 0


class FileLoop:
    """Batches network inputs of many files, runs the colorizer once per output kind (tag), renders and
    writes each file."""

    def __init__(
        self,
        colorizer: Colorizer,
        conditioning: Conditioning,
        outdir: Path,
        quality: int,
        summary: Summary,
        bar: tqdm,
    ) -> None:
        self.colorizer, self.conditioning = colorizer, conditioning
        self.outdir, self.quality = outdir, quality
        self.summary, self.bar = summary, bar
        self.used: set[Path] = set()

    def fail(self, src: Path, reason: str) -> None:
        log.error("%s: %s (skipped)", src, reason)
        self.summary.failed.append((src, reason))
        self.bar.update(1)

    def prepare(self, job: Job) -> Pending | None:
        try:
            image = self.colorizer.decode(job.src)
            return Pending(job, image, self.colorizer.network_input(image))
        except InputError as exc:
            self.fail(job.src, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
            self.fail(job.src, f"{type(exc).__name__}: {exc}")
        return None

    def _out_path(self, job: Job, fmt: str, tag: str) -> Path:
        suffix = output_suffix(job.src, fmt)
        base = self.outdir / job.rel.with_name(job.rel.stem + tag)
        path, n = base.with_name(base.name + suffix), 1
        while path.resolve() in self.used:  # e.g. photo.gif and photo.png both -> photo.png
            n += 1
            path = base.with_name(f"{base.name}-{n}{suffix}")
        return path

    def flush(self, batch: list[Pending]) -> None:
        if not batch:
            return
        try:
            preds = self.colorizer.predict(torch.stack([p.L for p in batch]), self.conditioning)
        except Exception as exc:  # noqa: BLE001
            if len(batch) > 1:  # e.g. out of GPU memory: retry one image at a time
                log.warning(
                    "generator failed on a batch of %d (%s: %s); retrying one by one",
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                for p in list(batch):
                    self.flush([p])
                batch.clear()
                return
            self.fail(batch[0].job.src, f"generator failed: {type(exc).__name__}: {exc}")
            batch.clear()
            return
        for i, p in enumerate(batch):
            try:
                tags = self.conditioning.tags
                for k, (tag, ab) in enumerate(zip(tags, preds)):
                    path = self._out_path(p.job, p.image.format, tag)
                    if path.resolve() == p.job.src.resolve():
                        raise InputError(f"output {path} would overwrite the input; choose another -o")
                    img = p.image
                    has_alpha = img.alpha is not None
                    pixels = self.colorizer.render(img, ab[i], pad=wants_padding(img.format, img.pixels, img.alpha))
                    if k == len(tags) - 1:
                        img.pixels = img.alpha = None  # type: ignore[assignment]  # not needed for encoding
                    write_image(path, pixels, img.format, img.metadata, self.quality, has_alpha=has_alpha)
                    del pixels
                    self.used.add(path.resolve())
                    self.summary.written.append(path)
                self.summary.done += 1
                self.bar.update(1)
            except Exception as exc:  # noqa: BLE001
                self.fail(p.job.src, str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}")
            batch[i] = None  # type: ignore[call-overload]  # free the decoded pixels early
        batch.clear()

    def run(self, jobs: list[Job], batch_size: int) -> None:
        batch: list[Pending] = []
        held = 0
        for job in jobs:
            item = self.prepare(job)
            if item is None:
                continue
            batch.append(item)
            held += item.image.nbytes
            if len(batch) >= batch_size or held >= BATCH_BYTES:
                self.flush(batch)
                held = 0
        self.flush(batch)


def _check_args(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    if not 1 <= args.jpeg_quality <= 100:
        raise UsageError("--jpeg-quality must be in 1..100")
    if args.samples is not None and args.samples < 1:
        raise UsageError("--samples must be >= 1")
    if args.max_pixels < 1:
        raise UsageError("--max-pixels must be >= 1")


def run(args: argparse.Namespace) -> int:
    """The subcommand's work: returns 0 (all written), 1 (some files failed) or 2 (usage error)."""
    try:
        _check_args(args)
        device = resolve_device(args.device)
        with GeneratorSource(
            model=args.model,
            checkpoint=args.checkpoint,
            run=args.run,
            model_uri=getattr(args, "model_uri", None),
            params_path=args.params,
            tracking=args.tracking_uri,
        ) as path:
            colorizer = Colorizer.from_path(path, device, max_pixels=args.max_pixels)
        conditioning = colorizer.conditioning(reference=args.reference, samples=args.samples, seed=args.seed)
    except UsageError as exc:
        print(f"chromapipe colorize: error: {exc}", file=sys.stderr)
        return 2
    jobs, missing = find_images(args.inputs)
    if not jobs and not missing:
        print(f"chromapipe colorize: error: no images found in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 2
    outdir = Path(args.output)
    log.info(
        "model %s (%s, %d px) on %s: %d file(s) -> %s",
        colorizer.name,
        colorizer.arch,
        colorizer.resolution,
        device,
        len(jobs),
        outdir,
    )
    summary = Summary(total=len(jobs) + len(missing))
    with (
        logging_redirect_tqdm(),
        tqdm(total=summary.total, unit="img", desc="colorize", disable=args.quiet or None) as bar,
    ):
        loop = FileLoop(colorizer, conditioning, outdir, args.jpeg_quality, summary, bar)
        for src, reason in missing:
            loop.fail(src, reason)
        loop.run(jobs, args.batch_size)
    print(
        f"colorized {summary.done} of {summary.total} file(s) into {outdir} "
        f"({len(summary.written)} written, {len(summary.failed)} failed)"
    )
    for src, reason in summary.failed:
        print(f"  failed: {src}: {reason}", file=sys.stderr)
    return 1 if summary.failed else 0
