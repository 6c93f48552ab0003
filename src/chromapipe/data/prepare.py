"""The prepare stage: source images -> decoded, filtered, cropped, encoded shards per split + manifest.

The per-image work (:mod:`chromapipe.data.process`) runs on an engine (:mod:`chromapipe.data.engines`:
this process, a local process pool, or a Ray cluster) in chunks of consecutive sources; results come
back in source order, so shard contents, names and hashes do not depend on the engine or the number of
workers. Images stream into the open shard file of their split: nothing else is buffered.

The manifest (:class:`chromapipe.data.manifest.Manifest`, built here and written to ``manifest.json``)
describes the data and nothing else, except its ``run`` entry: engine, workers, the node
that computed each chunk, timing. Two runs with the same params give manifests equal but for ``run``,
and byte-identical shards. ``params`` leaves out ``workers``, ``engine`` and ``label`` (they
change how fast or where, not what), so training's data fingerprint does not change with them either.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from chromapipe.config import DataConfig, resolve_path, to_dict
from chromapipe.data.encoding import ROUNDTRIP_STEP, storage_format
from chromapipe.data.engines import (
    chunk_size,
    chunked,
    connect_ray,
    local_pool,
    local_workers,
    ray_parallelism,
    resolve_engine,
    run_local,
    run_ray,
)
from chromapipe.data.manifest import Manifest, RunFacts, Skip, Split
from chromapipe.data.process import ChunkResult, ImageResult
from chromapipe.data.shards import ShardWriter
from chromapipe.data.sources import SourceImage, list_sources
from chromapipe.data.splitfile import NOT_IN_SPLIT_FILE, SplitFile, apply_split_file, read_split_file
from chromapipe.data.splits import SPLITS, assign_splits

log = logging.getLogger(__name__)

#: DataConfig fields that change how or where the stage runs, or what the report calls the set, not the
#: shards' contents: kept out of the manifest's ``params`` (and so out of training's data fingerprint)
NON_CONTENT_PARAMS = ("workers", "engine", "label", "ours")
#: skip reasons meaning "no image could be read from this listed file" (the only skips of role eval)
UNREADABLE = frozenset({"missing", "unreadable", "corrupt", "not_an_image", "too_large", "unsupported"})


def content_params(cfg: DataConfig) -> dict[str, Any]:
    """The params that determine the shards' contents (the manifest's ``params``)."""
    return {k: v for k, v in to_dict(cfg).items() if k not in NON_CONTENT_PARAMS}


def split_assignment(
    sources: Sequence[SourceImage], cfg: DataConfig, split_file: SplitFile | None = None
) -> dict[str, str]:
    """Group -> split: role eval puts everything in ``test``; role train takes ``split_file``'s assignment
    when there is one (a folder source's group is its relative path), else splits by the ratios."""
    if cfg.role == "eval":
        return {s.group: "test" for s in sources}
    if split_file is not None:
        return {s.group: split_file.assignment[s.id] for s in sources}
    return assign_splits(((s.group, s.label) for s in sources), cfg.splits, cfg.seed)


def _sources(cfg: DataConfig, key: str) -> tuple[list[SourceImage], list[str], SplitFile | None, list[SourceImage]]:
    """(sources to process in order, class names, the split file, sources its assignment leaves out).

    With a split file the sources are its rows, in its order (``max_images`` then caps the rows), and the
    images under root it does not list are left out."""
    if not cfg.split_file:
        sources, classes = list_sources(cfg, key)
        return sources, classes, None, []
    split_file = read_split_file(resolve_path(cfg.split_file), f"{key}.split_file")
    every, classes = list_sources(dataclasses.replace(cfg, max_images=None), key)
    listed, unlisted = apply_split_file(every, split_file, f"{key}.split_file")
    if cfg.max_images is not None:
        listed = listed[: cfg.max_images]
    if unlisted:
        log.info("%d images under %s are not in the split file %s: skipped", len(unlisted), cfg.root, cfg.split_file)
    return listed, classes, split_file, unlisted


@dataclass
class _Run:
    """What the chunks report besides their images: the round-trip error, and where they ran (the
    manifest's ``run`` entry, apart from timing)."""

    engine: str
    workers: int
    chunk_size: int
    nodes: list[str] = field(default_factory=list)
    chunk_nodes: list[int] = field(default_factory=list)
    chunk_seconds: float = 0.0
    roundtrip: int = 0

    def record(self, result: ChunkResult) -> None:
        self.roundtrip = max(self.roundtrip, result.roundtrip)
        if result.node not in self.nodes:
            self.nodes.append(result.node)
        self.chunk_nodes.append(self.nodes.index(result.node))
        self.chunk_seconds += result.seconds


@contextmanager
def _engine(
    sources: list[SourceImage], cfg: DataConfig
) -> Iterator[tuple[_Run, list[Sequence[SourceImage]], Iterator[ChunkResult], Executor | None]]:
    """The chunks, their results (in order) from the configured engine, and where to hash shard files
    (the local pool; a thread beside a Ray driver; None: in-process). Ray is disconnected after if this
    call connected it."""
    if resolve_engine(cfg) == "ray":
        started = connect_ray()
        try:
            parallelism = ray_parallelism()
            size = chunk_size(len(sources), parallelism)
            chunks = chunked(sources, size)
            with ThreadPoolExecutor(1, thread_name_prefix="prepare-hash") as hasher:  # hashlib releases the GIL
                yield _Run("ray", parallelism, size), chunks, run_ray(chunks, cfg), hasher
        finally:
            if started:
                import ray

                ray.shutdown()
        return
    workers = local_workers(cfg, len(sources))
    size = chunk_size(len(sources), workers)
    chunks = chunked(sources, size)
    with local_pool(workers) as pool:
        results = run_local(chunks, cfg, pool, workers)
        try:
            yield _Run("local", workers, size), chunks, results, pool
        finally:
            results.close()  # stops submitting if writing failed


@dataclass
class _Tally:
    """What the manifest counts, accumulated image by image in source order."""

    skipped: list[Skip] = field(default_factory=list)
    n_upscaled: int = 0
    n_grayscale: int = 0

    def add(self, item: SourceImage, result: ImageResult, writer: ShardWriter) -> None:
        self.n_grayscale += result.grayscale
        if result.pixels is None:
            code, detail = result.skip or ("unknown", "")
            self.skipped.append(Skip(source=item.id, reason=code, detail=detail))
            log.info("skipped %s: %s (%s)", item.id, code, detail)
            return
        self.n_upscaled += result.upscaled
        n = len(result.pixels)
        for k in range(n):
            writer.add_encoded(result.pixels[k], item.label, f"{item.id}#{k}" if n > 1 else item.id)

    @property
    def n_unreadable(self) -> int:
        return sum(s.reason in UNREADABLE for s in self.skipped)


def _split_entries(
    writers: dict[str, ShardWriter], assignment: dict[str, str], skipped_ids: set[str]
) -> dict[str, Split]:
    groups: dict[str, set[str]] = {name: set() for name in SPLITS}
    for group, name in assignment.items():
        groups[name].add(group)
    return {
        name: Split(n_images=w.count, n_sources=len(groups[name] - skipped_ids), shards=list(w.shards))
        for name, w in writers.items()
    }


def _check(manifest: Manifest, cfg: DataConfig) -> None:
    """Refuse a useless result; for an evaluation set, check that every readable listed image is in."""
    counts = manifest.image_counts()
    if cfg.role == "train" and counts["train"] == 0:
        raise RuntimeError(
            f"prepare: no usable training images out of {manifest.n_listed} sources; "
            f"skipped: {manifest.skipped_by_reason}"
        )
    if cfg.role == "eval":
        other = sorted(set(manifest.skipped_by_reason) - UNREADABLE)
        expected = manifest.n_listed - manifest.n_unreadable
        if other or counts["test"] != expected or counts["train"] or counts["val"]:
            raise RuntimeError(
                f"prepare (role eval): {counts['test']} test images for {expected} readable listed files; "
                f"skipped: {manifest.skipped_by_reason}"
            )
        if expected == 0:
            raise RuntimeError(
                f"prepare (role eval): none of the {manifest.n_listed} listed files is readable: "
                f"{manifest.skipped_by_reason}"
            )


def _manifest(
    cfg: DataConfig,
    classes: list[str],
    n_listed: int,
    splits: dict[str, Split],
    tally: _Tally,
    run: _Run,
    seconds: float,
    split_file: SplitFile | None,
) -> Manifest:
    return Manifest(
        params=content_params(cfg),
        role=cfg.role,
        classes=classes,
        n_listed=n_listed,
        splits=splits,
        skipped=tally.skipped,
        n_unreadable=tally.n_unreadable,
        n_grayscale=tally.n_grayscale,
        n_upscaled=tally.n_upscaled,
        storage=storage_format(cfg.encoding).describe(cfg.size),
        lab_roundtrip_max_abs_uint8=run.roundtrip,
        roundtrip_sample=f"every {ROUNDTRIP_STEP}th row and column of every stored image",
        run=RunFacts(
            engine=run.engine,
            workers=run.workers,
            chunk_size=run.chunk_size,
            nodes=run.nodes,
            chunk_nodes=run.chunk_nodes,
            seconds=round(seconds, 2),
            images_per_s=round(n_listed / seconds, 1) if seconds > 0 else None,
            worker_seconds=round(run.chunk_seconds, 2),
        ),
        split_file=split_file.describe() if split_file is not None else None,
    )


def prepare(cfg: DataConfig, out: Path, key: str = "datasets.<name>") -> Manifest:
    """Prepare one dataset into the directory ``out`` (the stage passes ``Params.dataset_dir(name)``); returns
    the manifest (also written to ``<out>/manifest.json``). ``key``: the dataset's key path in params
    (``datasets.<name>``), named by every configuration error."""
    start = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)  # a DVC output is rebuilt whole: no stale shard survives a params change
    sources, classes, split_file, unlisted = _sources(cfg, key)
    assignment = split_assignment(sources, cfg, split_file)
    tally = _Tally()
    tally.skipped += [
        Skip(source=s.id, reason=NOT_IN_SPLIT_FILE, detail=f"not listed in {cfg.split_file}") for s in unlisted
    ]
    with (
        _engine(sources, cfg) as (run, chunks, results, hasher),
        tqdm(total=len(sources), desc="prepare", unit="img") as bar,
    ):
        writers = {name: ShardWriter(out / name, cfg.shard_size, cfg.encoding, executor=hasher) for name in SPLITS}
        for chunk, result in zip(chunks, results):
            run.record(result)
            for item, image in zip(chunk, result.results):
                tally.add(item, image, writers[assignment[item.group]])
            bar.update(len(chunk))
        for w in writers.values():
            w.finish()
    splits = _split_entries(writers, assignment, {s.source for s in tally.skipped})
    seconds = time.perf_counter() - start
    manifest = _manifest(cfg, classes, len(sources) + len(unlisted), splits, tally, run, seconds, split_file)
    _check(manifest, cfg)
    manifest.write(out)
    log.info("prepared %s images (%s skipped) into %s", manifest.image_counts(), len(manifest.skipped), out)
    return manifest
