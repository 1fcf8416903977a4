"""Torch dataset over a validated split, and the collate function that batches it.

A sample is decoded (EXIF orientation, RGB; JPEG DCT-scaled when the image is at least twice the
canvas), transformed (`model.data.transforms`), and given its DB targets. Binary maps and the
image stay uint8 until `Batch.to(device)`: DataLoader workers pass a quarter of the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from model.data.images import read_image
from model.data.targets import make_targets
from model.data.transforms import DetectionTransform, normalize
from model.data.ufo import Split


class DetectionDataset(Dataset):
    """Samples of one split: dicts for `collate`. `with_targets=False` for prediction.

    Indexed by an int, or by ``(epoch, index)`` as `EpochSampler` yields: then the sample's
    augmentation is seeded from (seed, epoch, index) alone, so a sample is the same whichever
    worker makes it and whether or not training was interrupted and resumed in between.
    """

    def __init__(
        self, split: Split, transform: DetectionTransform, *, with_targets: bool = True, seed: int = 0, **target_options
    ):
        self.split = split
        self.names = list(split.images)
        self.transform = transform
        self.with_targets = with_targets
        self.seed = seed
        self.target_options = target_options

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        if isinstance(key, tuple):
            epoch, index = key
            self.transform.set_random_seed(int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]))
        else:
            index = key
        name = self.names[index]
        image, scale = read_image(self.split.path(name), max_side=self.transform.size)
        words = self.split.images[name]
        sample = self.transform(image, [w.points * scale for w in words.values()])
        # canvas <- decoded pixels <- original pixels, so predictions map back to the original
        to_canvas = sample.matrix @ np.diag([scale, scale, 1.0])
        h, w = image.shape[:2]
        item = {
            "name": name,
            "image": torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1))),
            "original_size": self.split.sizes.get(name) or (round(w / scale), round(h / scale)),
            "to_original": torch.from_numpy(np.linalg.inv(to_canvas)),
            "polygons": sample.polygons,
        }
        if self.with_targets:
            size = self.transform.size
            dont_care = [w.dont_care for w in words.values()]
            t = make_targets(size, size, sample.polygons, [dont_care[i] for i in sample.source], **self.target_options)
            item.update({k: torch.from_numpy(v) for k, v in t._asdict().items()})
        return item


class EpochSampler(Sampler):
    """Yields ``(epoch, index)``: a permutation of the dataset drawn from (seed, epoch).

    `set_epoch` before each epoch; `start_at(n)` skips the first n samples of the epoch, counted
    over all processes (resuming mid-epoch); `rank`/`world_size` give each DDP process its share.

    Every process gets the same number of samples, so every process runs the same number of
    steps: a process with one batch more would wait forever in DDP's gradient all-reduce. Like
    `torch.utils.data.DistributedSampler(drop_last=False)` we pad rather than drop: the epoch's
    first ``-n % world_size`` samples are appended once more (at most world_size - 1 repeats), so
    every image is trained on every epoch; dropping would leave up to world_size - 1 images out
    of each epoch, which on a few hundred receipts is not free. Processes take turns (rank r the
    r-th of every world_size samples), so the samples done after any number of equal steps are a
    prefix of the epoch's order: `start_at` skips that prefix, and a run resumed with another
    world size still sees each remaining sample once.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"EpochSampler: rank {rank} is not in 0..{world_size - 1} (world size {world_size})")
        self.n, self.seed, self.shuffle, self.rank, self.world_size = n, seed, shuffle, rank, world_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.skip = 0

    def start_at(self, samples_done: int) -> None:
        self.skip = samples_done

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        return torch.randperm(self.n, generator=g).tolist()

    def remaining(self) -> list[int]:
        """The epoch's samples after the skipped ones, padded from the epoch's start to a multiple
        of world_size (the same padding as an uninterrupted epoch's when skip is a multiple of it)."""
        order = self.order()
        rest = order[self.skip :]
        if not order or not rest:
            return []
        pad = -len(rest) % self.world_size
        return rest + (order * (pad // len(order) + 1))[:pad]  # tiny datasets: n < world_size - 1

    def __iter__(self):
        return iter([(self.epoch, i) for i in self.remaining()[self.rank :: self.world_size]])

    def __len__(self) -> int:
        return -(-max(0, self.n - self.skip) // self.world_size)


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: give each worker's augmentations their own random stream.

    Forked workers inherit the parent's generator state, so without this every worker would
    apply the same 'random' augmentations. torch seeds each worker differently every epoch.
    """
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, DetectionDataset):
        info.dataset.transform.set_random_seed(info.seed % 2**32)


@dataclass
class Batch:
    names: list[str]
    image: torch.Tensor  # (N, 3, H, W) uint8
    original_size: torch.Tensor  # (N, 2) int64: width, height
    to_original: torch.Tensor  # (N, 3, 3) float64: canvas pixels -> original pixels
    polygons: list[list[np.ndarray]]  # canvas pixels
    prob: torch.Tensor | None = None  # (N, H, W) uint8
    prob_mask: torch.Tensor | None = None  # (N, H, W) uint8
    thresh: torch.Tensor | None = None  # (N, H, W) float32
    thresh_mask: torch.Tensor | None = None  # (N, H, W) uint8

    def pin_memory(self) -> "Batch":
        return self._map(lambda t: t.pin_memory())

    def to(self, device, non_blocking: bool = False) -> "Batch":
        """Move to `device`, then normalise the image and make the maps float32 there."""
        moved = self._map(lambda t: t.to(device, non_blocking=non_blocking))
        moved.image = normalize(moved.image)
        for name in ("prob", "prob_mask", "thresh_mask"):
            if getattr(moved, name) is not None:
                setattr(moved, name, getattr(moved, name).float())
        return moved

    def _map(self, fn) -> "Batch":
        values = {}
        for f in fields(self):
            v = getattr(self, f.name)
            values[f.name] = fn(v) if isinstance(v, torch.Tensor) and f.name != "to_original" else v
        return Batch(**values)


def collate(items: list[dict]) -> Batch:
    has_targets = "prob" in items[0]
    maps = (
        {k: torch.stack([it[k] for it in items]) for k in ("prob", "prob_mask", "thresh", "thresh_mask")}
        if has_targets
        else {}
    )
    return Batch(
        names=[it["name"] for it in items],
        image=torch.stack([it["image"] for it in items]),
        original_size=torch.tensor([tuple(it["original_size"]) for it in items], dtype=torch.int64),
        to_original=torch.stack([it["to_original"] for it in items]),
        polygons=[it["polygons"] for it in items],
        **maps,
    )
