"""A resumable, deterministic, DDP-aware batch sampler.

Every epoch is a permutation of the dataset drawn from ``(seed, epoch)`` alone. The
global batch (``batch_size``, the recipe's value) takes the next ``batch_size`` indices
of that permutation; each of ``world_size`` processes takes its own contiguous slice of
``batch_size // world_size``. An incomplete tail is dropped and the next epoch starts.

The sampler yields lists of ``(epoch, index)`` pairs: the dataset wrapper
:class:`EpochIndexed` hands the epoch to the dataset (``set_epoch``) before fetching,
so augmentation is a pure function of ``(seed, epoch, index)`` even inside DataLoader
worker processes, which hold their own copy of the dataset.

The position that is saved in a checkpoint is the one *consumed* by the trainer
(:meth:`ResumableBatchSampler.advance`), not the one the DataLoader has prefetched, so
resuming replays exactly the batches that were not trained on.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["ResumableBatchSampler", "EpochIndexed"]


class ResumableBatchSampler(Sampler[list]):
    """Infinite sampler of per-rank batches of ``(epoch, index)`` pairs.

    Args:
        length: dataset size.
        batch_size: the global batch size.
        seed: permutation seed.
        rank, world_size: this process's slice of each global batch.
        shuffle: permute each epoch (otherwise dataset order).
    """

    def __init__(self, length: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of size {world_size}")
        if batch_size % world_size:
            raise ValueError(f"train.batch_size={batch_size} must be divisible by the number of processes ({world_size})")
        if length < batch_size:
            raise ValueError(f"the dataset has {length} items, fewer than train.batch_size={batch_size}")
        self.length = length
        self.batch_size = batch_size
        self.local_batch = batch_size // world_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0  # index into the epoch's permutation of the next unconsumed global batch

    @property
    def batches_per_epoch(self) -> int:
        return self.length // self.batch_size

    def permutation(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.length)
        g = torch.Generator()
        g.manual_seed((self.seed * 1_000_003 + epoch) & 0x7FFF_FFFF_FFFF_FFFF)
        return torch.randperm(self.length, generator=g)

    def _batch(self, perm: torch.Tensor, epoch: int, position: int) -> list:
        start = position + self.rank * self.local_batch
        return [(epoch, int(i)) for i in perm[start : start + self.local_batch]]

    def __iter__(self) -> Iterator[list]:
        epoch, position = self.epoch, self.position
        perm = self.permutation(epoch)
        while True:
            if position + self.batch_size > self.length:
                epoch, position = epoch + 1, 0
                perm = self.permutation(epoch)
            yield self._batch(perm, epoch, position)
            position += self.batch_size

    def __len__(self) -> int:  # batches left in the current epoch
        return (self.length - self.position) // self.batch_size

    def advance(self, batches: int = 1) -> None:
        """Mark ``batches`` global batches as consumed (the trainer calls this per step)."""
        for _ in range(batches):
            if self.position + self.batch_size > self.length:
                self.epoch, self.position = self.epoch + 1, 0
            self.position += self.batch_size
            if self.position + self.batch_size > self.length:
                self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "batch_size": self.batch_size, "length": self.length}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "batch_size", "length"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"cannot resume the sampler: {key} was {state.get(key)} and is now {getattr(self, key)} "
                    "(the data, train.batch_size or data.seed changed)"
                )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


class EpochIndexed(Dataset):
    """Wrap a dataset with ``set_epoch(epoch)`` so that ``ds[(epoch, index)]`` is
    ``ds.set_epoch(epoch); ds[index]``; works in worker processes too."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Sequence[int]):
        epoch, index = key
        if epoch != self._epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
            self._epoch = epoch
        return self.dataset[index]
