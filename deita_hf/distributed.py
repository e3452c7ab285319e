"""Several processes, one result: which shards each process computes, barriers, and the merge.

Under ``torchrun`` or ``accelerate launch`` every process runs the same command. Shard ``k`` belongs to
process ``k mod world_size``; each process writes its shards to the shared output folder; after a barrier
the main process reads all shards back in shard order, so the merged result is the single-process result
row for row. On several nodes, the output folder must be on a file system that every node sees.

>>> shards_of_rank(num_shards=5, rank=1, world_size=2)
[1, 3]
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place in the run: global rank, number of processes, and rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        return self.local_rank == 0


def _launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_processes(timeout_s: int = 21600) -> ProcessInfo:
    """Join the process group that ``torchrun`` / ``accelerate launch`` set up, if any.

    Uses ``accelerate.PartialState`` (CPU processes talk over gloo, GPU processes over NCCL), whose barrier,
    main-process-first and process-group teardown the functions below use. A single process (no launcher) needs
    no process group and gets rank 0 of 1.
    """
    if _launched_world_size() <= 1:
        return ProcessInfo()
    import torch
    from accelerate import PartialState

    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "false").lower() == "true"
    state = PartialState(cpu=cpu, timeout=timedelta(seconds=timeout_s))
    info = ProcessInfo(state.process_index, state.num_processes, max(state.local_process_index, 0))
    logger.info(
        "process %d of %d (local rank %d, backend %s)", info.rank, info.world_size, info.local_rank, state.backend
    )
    return info


def _state() -> Any:
    """The ``accelerate.PartialState`` that :func:`init_processes` set up (its state is shared per process)."""
    from accelerate import PartialState

    return PartialState()


def barrier(info: ProcessInfo) -> None:
    """Wait until every process gets here (a no-op for a single process)."""
    if info.world_size > 1:
        _state().wait_for_everyone()


def finish_processes(info: ProcessInfo) -> None:
    """A last barrier, then leave the process group cleanly."""
    if info.world_size > 1:
        state = _state()
        state.wait_for_everyone()
        state.destroy_process_group()


@contextlib.contextmanager
def main_process_first(info: ProcessInfo) -> Iterator[None]:
    """Run the block on the main process first (e.g. to build a cache), then on the others."""
    if info.world_size <= 1:
        yield
        return
    with _state().main_process_first():
        yield


def shards_of_rank(num_shards: int, rank: int, world_size: int) -> list[int]:
    """The shard indices that process ``rank`` computes: every ``world_size``-th, starting at ``rank``."""
    return list(range(rank, num_shards, world_size))


def shard_bounds(num_rows: int, shard_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges of consecutive shards of ``shard_size`` rows (the last may be shorter)."""
    if shard_size < 1:
        raise ConfigError(f"shard_size must be at least 1, got {shard_size}")
    return [(start, min(start + shard_size, num_rows)) for start in range(0, num_rows, shard_size)]


def leave(info: ProcessInfo) -> None:
    """Leave the process group without waiting for the others (after an error)."""
    if info.world_size > 1:
        _state().destroy_process_group()
