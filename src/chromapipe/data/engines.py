"""Where the prepare stage's per-image work runs: this process, a local process pool, or a Ray cluster.

Every engine cuts the source listing into chunks of consecutive sources, runs
:func:`~chromapipe.data.process.process_chunk` on each, and yields the chunk results *in source order*,
whatever order they finish in. The shard writer consumes them in that order, so shard contents, names
and hashes do not depend on the engine, the number of workers or the chunk size. At most a small window
of chunks is in flight, which bounds memory however large the dataset.

- ``local`` with one worker: in this process, torch pinned to one thread.
- ``local`` with N workers: a process pool (``fork`` where the platform has it: workers start in
  milliseconds instead of re-importing torch; each is pinned to one torch thread, so N processes use N
  cores and not N × N threads).
- ``ray``: one Ray task per chunk (1 CPU each, spread over the nodes), on the cluster named by
  ``RAY_ADDRESS`` or a local Ray instance. Results come back through the object store; each chunk
  records the node that computed it. Every node must be able to read ``data.root``.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from chromapipe.config import DataConfig
from chromapipe.data.process import ChunkResult, process_chunk
from chromapipe.data.sources import SourceImage

T = TypeVar("T")

#: sources per chunk at most: small enough to balance work across workers and keep a chunk's results
#: small (16 × 393 kB at 256² float16: the worker's memory is reused chunk after chunk instead of
#: faulting in fresh pages, fewer faults than 64: reports/benchmarks.md, section "Prepare: source photos →
#: shards"), large enough that scheduling is free
MAX_CHUNK = 16
#: chunks per worker in flight: keeps every worker busy while the driver writes
WINDOW_PER_WORKER = 3
#: with ``workers: auto``, below this many sources per worker a pool costs more than it saves
MIN_SOURCES_PER_WORKER = 32


def resolve_engine(cfg: DataConfig) -> str:
    """``auto`` means Ray exactly when ``RAY_ADDRESS`` names a cluster."""
    if cfg.engine == "auto":
        return "ray" if os.environ.get("RAY_ADDRESS") else "local"
    return cfg.engine


def local_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def local_workers(cfg: DataConfig, n_sources: int) -> int:
    """``workers``: an explicit count, or ``auto``: every local core, fewer for a small listing."""
    if cfg.workers != "auto":
        return max(1, int(cfg.workers))
    return max(1, min(local_cores(), n_sources // MIN_SOURCES_PER_WORKER))


def chunk_size(n_sources: int, parallelism: int) -> int:
    """Several chunks per worker (load balance: photos differ in size), at most MAX_CHUNK sources."""
    return max(1, min(MAX_CHUNK, math.ceil(n_sources / (4 * parallelism))))


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _in_order(
    submit: Callable[[Any], Any], result: Callable[[Any], ChunkResult], chunks: Sequence[Any], window: int
) -> Iterator[ChunkResult]:
    """Submit chunks with at most ``window`` in flight; yield results in submission order."""
    pending: deque[Any] = deque()
    todo = iter(chunks)
    for chunk in todo:
        pending.append(submit(chunk))
        if len(pending) >= window:
            break
    while pending:
        head = pending.popleft()
        nxt = next(todo, None)
        if nxt is not None:
            pending.append(submit(nxt))
        yield result(head)


def _keep_freed_memory() -> None:
    """Let glibc keep freed memory instead of returning it to the OS (and mapping fresh pages again):
    a worker allocates and frees the same few MB per image, and first-touch page faults on fresh pages
    cost as much as the copy itself on some virtual machines (fewer faults and less CPU per image:
    reports/benchmarks.md, section "Prepare: source photos → shards"). Linux/glibc only; elsewhere nothing
    happens."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: trim the heap top only beyond 1 GiB free
        libc.mallopt(-3, 1 << 25)  # M_MMAP_THRESHOLD: blocks up to 32 MiB come from the (reused) heap
    except (OSError, AttributeError):
        pass


def _init_worker() -> None:
    """A pool worker: one torch thread (N processes use N cores, not N x N threads), memory kept."""
    torch.set_num_threads(1)
    _keep_freed_memory()


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where available: no re-import of torch per worker (seconds each on a small machine). The
    workers only run single-threaded torch code (``_init_worker``) and plain I/O, which is safe in a
    forked child, as in torch's own DataLoader workers."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


@contextmanager
def local_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """A pool of ``workers`` single-threaded processes, or None for one worker (work stays in-process)."""
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker) as pool:
        yield pool


def run_local(
    chunks: Sequence[Sequence[SourceImage]], cfg: DataConfig, pool: ProcessPoolExecutor | None, workers: int
) -> Iterator[ChunkResult]:
    """Chunk results in order: in this process without a pool, else from the pool's ``workers``."""
    if pool is None:
        for chunk in chunks:
            yield process_chunk(list(chunk), cfg)
        return
    yield from _in_order(
        lambda c: pool.submit(process_chunk, list(c), cfg), lambda f: f.result(), chunks, WINDOW_PER_WORKER * workers
    )


def _ray_chunk(items: list[SourceImage], cfg: DataConfig) -> ChunkResult:
    """A Ray task: one chunk, on whichever node Ray picked; records that node's id."""
    import ray

    _keep_freed_memory()  # the task runs in a long-lived Ray worker process, like a pool worker
    return process_chunk(items, cfg, node=ray.get_runtime_context().get_node_id())


def ray_parallelism() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def connect_ray() -> bool:
    """Join the cluster named by RAY_ADDRESS, else start a new local Ray instance (``address="local"``:
    never a stray cluster that happens to run on the machine); True when this call connected."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", log_to_driver=False, configure_logging=False)
    return True


def run_ray(chunks: Sequence[Sequence[SourceImage]], cfg: DataConfig) -> Iterator[ChunkResult]:
    """Chunks as Ray tasks (1 CPU each, SPREAD over the nodes); Ray must already be connected."""
    import ray

    task = ray.remote(num_cpus=1, scheduling_strategy="SPREAD", max_retries=2)(_ray_chunk)
    window = WINDOW_PER_WORKER * ray_parallelism()
    yield from _in_order(lambda c: task.remote(list(c), cfg), ray.get, chunks, window)
