"""Where and how the network runs: the device, the DDP process group, and process-wide settings
for the CPU, applied by the commands (never on import).

:func:`keep_freed_memory`: glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
returns it on free, so each of the network's large activations (hundreds of MB at 640x480) is
zero-filled by the kernel again on every use. On 2 cores that made a 640x480 fusion spend more
time in page faults than in arithmetic (45 s, 53 s of it system time, against 17 s once freed
memory is kept; measured with ``python -m benchmarks.network_cpu``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from the heap and keep freed memory for reuse instead of
    unmapping it. Returns False (changing nothing) where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def pick_device(name: str) -> "torch.device":  # noqa: F821
    """``auto``: CUDA when available, else the CPU; otherwise the named device."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Dist:
    """This process's place in a DDP job (one process, rank 0 of 1, without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: "torch.device") -> Dist:  # noqa: F821
    """Join the process group torchrun describes in the environment (NCCL on CUDA, else Gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def all_finite(values: "torch.Tensor", dist_info: Dist) -> bool:  # noqa: F821
    """Whether every entry of ``values`` is finite on every rank."""
    import torch

    flag = torch.isfinite(values.detach()).all().to(torch.float32).reshape(1)
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier(dist_info: Dist) -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()
