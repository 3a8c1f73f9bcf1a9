"""Data loaders for training: caption batches (ITC/ITM/LM) and VQA batches, forever, reshuffled every epoch.

Images are transformed in the datasets and text is tokenised in the collate functions (``data/batches.py``),
outside ``forward()``, so the model stays exportable.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from ..config import DataConfig
from ..data.datasets import CaptionTrainDataset, VQADataset
from ..data.transforms import ImagePreprocess
from .distributed import DistInfo, make_sampler


def caption_dataset(data: DataConfig, preprocess: ImagePreprocess) -> Dataset:
    ds = CaptionTrainDataset(data.path(data.train_captions), data.image_root, preprocess, max_words=data.max_words,
                             lm_first=data.lm_captions == "first")
    return _limit(ds, data.limit_images, ds.image_index)


def vqa_dataset(data: DataConfig, preprocess: ImagePreprocess) -> Dataset:
    if not data.train_vqa:
        raise ValueError("a stage has a vqa weight but data.train_vqa is not set")
    ds = VQADataset(data.path(data.train_vqa), data.image_root, preprocess, split="train", max_words=data.max_words)
    if data.limit_images is None:
        return ds
    keep_images = sorted({it.image for it in ds.items})[: data.limit_images]
    keep = set(keep_images)
    return Subset(ds, [i for i, it in enumerate(ds.items) if it.image in keep])


def vqa_sample_weights(ds: Dataset, type_weights: dict[str, float] | None) -> Tensor | None:
    """One sampling weight per question of a VQA dataset (a ``VQADataset`` or a ``Subset`` of one), from
    ``data.vqa_type_weights``; None when no weights are set. A listed type absent from the data is an error (a typo
    would otherwise silently change nothing)."""
    if type_weights is None:
        return None
    base, indices = (ds.dataset, ds.indices) if isinstance(ds, Subset) else (ds, range(len(ds)))
    types = [base.items[i].question_type for i in indices]
    present = {t for t in types if t is not None}
    missing = sorted(set(type_weights) - present)
    if missing:
        raise ValueError(f"data.vqa_type_weights: no training question has question_type '{missing[0]}' "
                         f"(types in the data: {', '.join(sorted(present)) or 'none'})")
    weights = torch.tensor([float(type_weights.get(t, 1.0)) if t is not None else 1.0 for t in types])
    if not (weights > 0).any():
        raise ValueError("data.vqa_type_weights: every training question has weight 0")
    return weights


class WeightedEpochSampler(Sampler[int]):
    """Each epoch draws ``len(weights)`` indices with replacement, in proportion to ``weights`` (seeded by seed and
    epoch, the same on every rank); under torchrun each rank takes every ``world_size``-th draw."""

    def __init__(self, weights: Tensor, seed: int, rank: int = 0, world_size: int = 1):
        self.weights, self.seed, self.rank, self.world_size = weights, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights) // self.world_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(self.weights, len(self) * self.world_size, replacement=True, generator=generator)
        return iter(draws[self.rank::self.world_size].tolist())


def _limit(ds: Dataset, limit: int | None, image_index: list[int]) -> Dataset:
    if limit is None:
        return ds
    return Subset(ds, [i for i, idx in enumerate(image_index) if idx < limit])


def infinite_loader(ds: Dataset, collate, batch_size: int, info: DistInfo, seed: int,
                    num_workers: int, weights: Tensor | None = None) -> Iterator:
    """Yields batches forever, reshuffling every epoch (with a DistributedSampler under torchrun); with ``weights``
    (one per sample) each epoch draws samples in proportion to them instead (``WeightedEpochSampler``)."""
    if weights is not None:
        sampler = WeightedEpochSampler(weights, seed, info.rank, info.world_size)
    else:
        sampler = make_sampler(ds, info, shuffle=True, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True,
                        collate_fn=collate, num_workers=num_workers, generator=generator,
                        persistent_workers=num_workers > 0)
    if len(loader) == 0:
        raise ValueError(f"batch size {batch_size} is larger than the {len(ds)} training samples per process")
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1
