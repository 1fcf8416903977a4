"""The torch dataset and collate: real images through real DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from model.data.dataset import Batch, DetectionDataset, collate, seed_worker
from model.data.transforms import AugmentConfig, eval_transform, train_transform
from model.data.ufo import DatasetRoot, Word, write_ufo


@pytest.fixture(scope="module")
def val_split(synth_root):
    """Four synthetic receipts (real JPEGs, 900-1400 px tall, ~80 words each)."""
    return DatasetRoot(synth_root).load("val")


def test_batches_hold_images_maps_sizes_and_exact_inverse(val_split):
    ds = DetectionDataset(val_split, eval_transform(640))
    batch = collate([ds[0], ds[1]])
    assert batch.image.shape == (2, 3, 640, 640) and batch.image.dtype == torch.uint8
    assert batch.prob.shape == (2, 640, 640) and batch.thresh.dtype == torch.float32
    for i, name in enumerate(batch.names):
        w, h = val_split.sizes[name]
        assert tuple(batch.original_size[i].tolist()) == (w, h)
        # canvas polygons mapped back land on the annotated points (the JPEG may be DCT-scaled)
        words = list(val_split.images[name].values())
        inv = batch.to_original[i].numpy()
        for poly, word in zip(batch.polygons[i], words):
            back = poly @ inv[:2, :2].T + inv[:2, 2]
            assert np.abs(back - word.points).max() < 0.5
        assert batch.prob[i].sum() > 0


def test_large_jpeg_is_decoded_reduced_yet_maps_back_exactly(tmp_path):
    from PIL import Image

    (tmp_path / "images" / "val").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1200, 900, 3), dtype=np.uint8)).save(tmp_path / "images/val/big.jpg")
    pts = np.array([[101.5, 200.25], [700, 200.25], [700, 260], [101.5, 260]])
    write_ufo({"big.jpg": {"0001": Word(pts)}}, tmp_path / "jsons/val.json")
    split = DatasetRoot(tmp_path).load("val")
    item = DetectionDataset(split, eval_transform(320))[0]  # 1200 px >= 2 x 320: DCT-scaled decode
    inv = item["to_original"].numpy()
    back = item["polygons"][0] @ inv[:2, :2].T + inv[:2, 2]
    np.testing.assert_allclose(back, pts, atol=1e-3)
    assert item["original_size"] == (900, 1200)


def test_to_device_normalises_and_makes_float_maps(val_split):
    batch = collate([DetectionDataset(val_split, eval_transform(320))[0]])
    moved = batch.to("cpu")
    assert moved.image.dtype == torch.float32 and moved.prob.dtype == torch.float32
    # ImageNet normalisation of the red channel
    expected = (batch.image[0, 0].float() / 255 - 0.485) / 0.229
    torch.testing.assert_close(moved.image[0, 0], expected, rtol=1e-5, atol=1e-5)


def test_dataloader_workers_give_the_same_eval_batches(val_split):
    ds = DetectionDataset(val_split, eval_transform(320))
    single = list(DataLoader(ds, batch_size=2, collate_fn=collate))
    multi = list(DataLoader(ds, batch_size=2, collate_fn=collate, num_workers=2))
    assert len(single) == len(multi) > 1
    for a, b in zip(single, multi):
        assert isinstance(b, Batch) and a.names == b.names
        assert torch.equal(a.image, b.image) and torch.equal(a.thresh, b.thresh)


def test_each_worker_augments_differently(val_split):
    # the same image four times: without per-worker seeding both workers would draw the same
    name = next(iter(val_split.images))
    val_split.images = {name: val_split.images[name]}
    ds = DetectionDataset(val_split, train_transform(AugmentConfig(size=256), seed=0))
    ds.names = [name] * 4
    batches = list(DataLoader(ds, batch_size=1, collate_fn=collate, num_workers=2, worker_init_fn=seed_worker))
    first_of_worker = [batches[0].image, batches[1].image]  # indices 0 and 1 go to different workers
    assert not torch.equal(*first_of_worker)


def test_epoch_sampler_is_a_seeded_permutation_that_resumes_and_shards():
    from model.data.dataset import EpochSampler

    s = EpochSampler(10, seed=1)
    s.set_epoch(3)
    full = list(s)
    assert sorted(i for _, i in full) == list(range(10)) and all(e == 3 for e, _ in full)
    s.set_epoch(4)
    assert list(s) != [(4, i) for _, i in full]  # a new order each epoch
    s.set_epoch(3)
    s.start_at(4)
    assert list(s) == full[4:] and len(s) == 6
    shards = [EpochSampler(10, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for sh in shards:
        sh.set_epoch(3)
        sh.start_at(4)  # 4 samples done over both processes: 2 each
    assert sorted(list(shards[0]) + list(shards[1])) == sorted(full[4:])
