"""The peak-memory probe of bench_memory on known allocations."""

from __future__ import annotations

import torch

from benchmarks import bench_memory


def _transient(megabytes: int):
    def call() -> None:
        blocks = [torch.ones(1_000_000) for _ in range(megabytes // 4)]  # 4 MB each, freed on return
        blocks[-1].add_(1)

    return call


def test_peak_working_bytes_sees_a_transient_allocation_on_a_fragmented_heap():
    """After glibc has moved 4 MB blocks to its heap (a freed mmap raises its threshold) and long-lived
    blocks pin freed ones in place, the freed pages stay resident: without trimming, a 200 MB transient
    would reuse them and look free (measured 1.7 MB)."""
    first = torch.ones(1_000_000)
    del first  # a freed mmap'ed block raises glibc's mmap threshold above 4 MB
    blocks = [torch.ones(1_000_000) for _ in range(100)]
    pinned = blocks[::10]
    del blocks
    assert 190e6 < bench_memory.peak_working_bytes(_transient(200)) < 300e6
    assert bench_memory.peak_working_bytes(lambda: None) < 20e6
    assert len(pinned) == 10
