"""Torch's intra-op thread count for a block of work.

On a shared CPU, torch's default (one thread per core) oversubscribes as soon as anything else runs:
OpenMP threads spin waiting for each other. Measured on 2 busy cores: a VAE step 0.33 s with one
thread vs 1.8 s with the default, and the ToyWorld demo (16 px models) 2.6 s vs 96-268 s. Small models
gain nothing from more threads, so their jobs run with one per granted core.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` (at least 1) intra-op threads; restore the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(before)
