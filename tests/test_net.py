"""DBNet network and loss: shapes, timm feature channels, weights files, masks and hard negatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import load_config
from model.data.dataset import Batch
from model.data.targets import make_targets
from model.errors import DataError
from model.net import DBLoss, DBNet, build_model

TINY = "test_efficientnet"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is as fast, and immune to the spin-waiting of several on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def models_cfg(name: str = TINY, **encoder) -> dict:
    return {
        "encoder": {"model_name": name, "pretrained": False, "weights": None, "out_indices": [1, 2, 3, 4], **encoder},
        "decoder": {"inner_channels": 32, "output_channels": 8},
        "head": {"k": 50, "upscale": 4},
    }


def tiny(name: str = TINY, seed: int = 0, **encoder) -> DBNet:
    torch.manual_seed(seed)
    return build_model(models_cfg(name, **encoder))


# --------------------------------------------------------------------------------------- network


@pytest.mark.parametrize("h, w", [(64, 96), (160, 128)])
def test_output_maps_at_input_resolution(h, w):
    model = tiny().train()
    out = model(torch.randn(2, 3, h, w))
    assert set(out) == {"prob", "prob_logits", "thresh", "binary"}
    for v in out.values():
        assert v.shape == (2, h, w) and v.dtype == torch.float32
    assert 0 <= out["prob"].min() and out["prob"].max() <= 1
    torch.testing.assert_close(out["binary"], torch.sigmoid(50 * (out["prob"] - out["thresh"])))
    model.eval()
    with torch.no_grad():
        assert set(model(torch.randn(1, 3, h, w))) == {"prob", "prob_logits"}
        assert set(model(torch.randn(1, 3, h, w), all_maps=True)) == {"prob", "prob_logits", "thresh", "binary"}


def test_input_must_be_a_multiple_of_the_stride():
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny()(torch.randn(1, 3, 64, 80))


@pytest.mark.parametrize("name", [TINY, "test_resnet"])
def test_channels_and_strides_come_from_feature_info(name):
    import timm

    model = tiny(name)
    info = timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4)).feature_info
    assert model.encoder.channels == info.channels() and model.encoder.strides == info.reduction()
    assert [conv.in_channels for conv in model.decoder.lateral] == info.channels()
    assert model.decoder.out_channels == 4 * 8
    assert model(torch.randn(1, 3, 64, 64))["prob"].shape == (1, 64, 64)


def test_coarser_levels_need_a_matching_upscale():
    cfg = models_cfg(out_indices=[2, 3, 4])
    with pytest.raises(
        DataError,
        match=r"upscale=4 must equal the stride of the finest feature level \(8: .*; set "
        r"models.head.upscale=8, or models.encoder.out_indices=\[1, 2, 3, 4\] for upscale=4",
    ):
        build_model(cfg)
    cfg["head"]["upscale"] = 8
    assert build_model(cfg).train()(torch.randn(1, 3, 64, 64))["thresh"].shape == (1, 64, 64)


def test_the_seed_backbone_from_the_config():
    cfg = load_config(["models.encoder.pretrained=false"])
    model = build_model(cfg.models)
    assert model.encoder.channels == [32, 56, 160, 448] and model.encoder.strides == [4, 8, 16, 32]
    assert model.decoder.out_channels == 256


def test_unknown_backbone_names_the_closest():
    with pytest.raises(DataError, match="did you mean .*test_efficientnet"):
        tiny("test_efficientnett")
    with pytest.raises(DataError, match=r"cannot give features out_indices=\[1, 2, 7\]"):
        tiny(out_indices=[1, 2, 7])


def test_channels_last_gives_the_same_maps():
    model = tiny().eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref = model(x, all_maps=True)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last), all_maps=True)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], atol=1e-4, rtol=1e-4)


def test_weights_file_round_trip(tmp_path):
    import timm

    source = tiny(seed=1).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = source.encoder(x)

    def encoder_output(path) -> list[torch.Tensor]:
        model = tiny(seed=2, weights=str(path)).eval()
        with torch.no_grad():
            return model.encoder(x)

    # the features model's own state dict
    path = tmp_path / "backbone.pth"
    torch.save(source.encoder.body.state_dict(), path)
    for a, b in zip(encoder_output(path), expected):
        torch.testing.assert_close(a, b)
    # a whole DBNet checkpoint ({"model": state_dict}, encoder.body. prefix)
    torch.save({"model": source.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    for a, b in zip(encoder_output(tmp_path / "ckpt.pt"), expected):
        torch.testing.assert_close(a, b)
    # the full timm classification model, as downloaded from the hub (its classifier is not used)
    torch.manual_seed(3)
    full = timm.create_model(TINY)
    torch.save(full.state_dict(), tmp_path / "full.pth")
    loaded = tiny(seed=2, weights=str(tmp_path / "full.pth")).encoder.body.state_dict()
    for key, value in loaded.items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(value, full.state_dict()[key])
    # weights win over pretrained=true: no hub needed
    assert tiny(pretrained=True, weights=str(path)).encoder.channels == [24, 32, 48, 64]


def test_bad_weights_files_are_named(tmp_path):
    import timm

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(DataError, match=r"corrupt\.pth: cannot read weights file"):
        tiny(weights=str(corrupt))
    with pytest.raises(DataError, match=r"missing\.pth: weights file does not exist"):
        tiny(weights=str(tmp_path / "missing.pth"))
    other = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), other)
    with pytest.raises(DataError, match=r"resnet\.pth: weights do not fit the backbone: .* missing"):
        tiny(weights=str(other))
    shapes = tmp_path / "shapes.pth"
    state = tiny().encoder.body.state_dict()
    state["conv_stem.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(state, shapes)
    with pytest.raises(DataError, match=r"shapes\.pth: .*conv_stem\.weight \(3, 3, 3, 3\)"):
        tiny(weights=str(shapes))
    torch.save({"lr": 0.1}, tmp_path / "notweights.pth")
    with pytest.raises(DataError, match="not a state dict"):
        tiny(weights=str(tmp_path / "notweights.pth"))


# ------------------------------------------------------------------------------------------ loss


def square_targets(size: int = 64) -> Batch:
    """Two words on a (1, size, size) canvas, one ignored region (prob_mask 0), float maps as Batch.to gives."""
    polys = [
        np.array([[8, 8], [40, 8], [40, 24], [8, 24]], float),
        np.array([[10, 36], [54, 36], [54, 56], [10, 56]], float),
    ]
    t = make_targets(size, size, polys)
    prob_mask = t.prob_mask.copy()
    prob_mask[0:6, 44:60] = 0  # an ignored (don't-care) patch away from the words
    maps = {
        k: torch.from_numpy(np.ascontiguousarray(v))[None].float()
        for k, v in (("prob", t.prob), ("prob_mask", prob_mask), ("thresh", t.thresh), ("thresh_mask", t.thresh_mask))
    }
    image = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    return Batch(
        names=["x"],
        image=image,
        original_size=torch.tensor([[size, size]]),
        to_original=torch.eye(3)[None],
        polygons=[polys],
        **maps,
    )


def perfect(batch: Batch) -> dict[str, torch.Tensor]:
    return {
        "prob": batch.prob.clone(),
        "prob_logits": (batch.prob * 2 - 1) * 30,
        "thresh": batch.thresh.clone(),
        "binary": batch.prob.clone(),
    }


def test_perfect_prediction_has_near_zero_loss():
    batch = square_targets()
    loss = DBLoss(load_config().models.loss)
    total, parts = loss(perfect(batch), batch)
    assert set(parts) == {"loss/prob", "loss/thresh", "loss/binary"}
    assert total.item() < 1e-5 and all(v.item() < 1e-5 for v in parts.values())
    without_logits = {k: v for k, v in perfect(batch).items() if k != "prob_logits"}
    assert loss(without_logits, batch)[0].item() < 1e-4  # the probability path
    bad = perfect(batch)
    bad["thresh"] = bad["thresh"] + 0.1
    _, parts = loss(bad, batch)
    assert parts["loss/thresh"].item() == pytest.approx(0.1, abs=1e-5)


def test_weights_combine_the_parts():
    batch = square_targets()
    torch.manual_seed(0)
    pred = {k: torch.rand_like(v) for k, v in perfect(batch).items()}
    total, parts = DBLoss()(pred, batch)
    assert total.item() == pytest.approx(
        5 * parts["loss/prob"].item() + 10 * parts["loss/thresh"].item() + parts["loss/binary"].item(), rel=1e-6
    )
    total2, _ = DBLoss({"prob_map_loss_weight": 1.0, "thresh_map_loss_weight": 0.0, "binary_map_loss_weight": 0.0})(
        pred, batch
    )
    assert total2.item() == pytest.approx(parts["loss/prob"].item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown setting"):
        DBLoss({"alpha": 1.0})


def bce(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


@pytest.mark.parametrize("n_pos, n_neg", [(2, 100), (10, 12)])
def test_hard_negative_mining_keeps_the_worst_negatives(n_pos, n_neg):
    rng = np.random.default_rng(0)
    n = n_pos + n_neg + 5  # 5 pixels masked out
    gt = np.zeros(n, np.float32)
    gt[:n_pos] = 1
    mask = np.ones(n, np.float32)
    mask[-5:] = 0
    p = rng.uniform(0.05, 0.95, n).astype(np.float32)
    p[-5:] = 0.999  # masked out: would be the worst negatives
    logits = np.log(p / (1 - p))
    t = lambda a: torch.from_numpy(a).view(1, 1, n)  # noqa: E731
    batch = {
        "prob": t(gt),
        "prob_mask": t(mask),
        "thresh": t(np.zeros(n, np.float32)),
        "thresh_mask": t(np.zeros(n, np.float32)),
    }
    pred = {"prob": t(p), "prob_logits": t(logits), "thresh": t(np.zeros(n, np.float32)), "binary": t(gt)}
    k = min(n_neg, 3 * n_pos)
    neg = np.sort(bce(p[n_pos : n_pos + n_neg].astype(np.float64), 0))[::-1][:k]
    expected = (bce(p[:n_pos].astype(np.float64), 1).sum() + neg.sum()) / (n_pos + k)
    _, parts = DBLoss()(pred, batch)
    assert parts["loss/prob"].item() == pytest.approx(expected, rel=1e-5)
    _, parts = DBLoss(negative_ratio=1.0)(pred, batch)
    k1 = min(n_neg, n_pos)
    expected1 = (bce(p[:n_pos].astype(np.float64), 1).sum() + neg[:k1].sum()) / (n_pos + k1)
    assert parts["loss/prob"].item() == pytest.approx(expected1, rel=1e-5)


def test_masked_out_pixels_do_not_count():
    batch = square_targets()
    torch.manual_seed(0)
    pred = {k: torch.rand_like(v) * 0.8 + 0.1 for k, v in perfect(batch).items()}
    pred["prob_logits"] = torch.logit(pred["prob"])
    total, parts = DBLoss()(pred, batch)
    outside = (batch.prob_mask == 0) & (batch.thresh_mask == 0)
    assert outside.sum() > 50
    changed = {
        k: torch.where(outside, torch.rand_like(v) * 50 - 25 if k == "prob_logits" else torch.rand_like(v), v)
        for k, v in pred.items()
    }
    changed["prob"] = torch.sigmoid(changed["prob_logits"])
    total2, parts2 = DBLoss()(changed, batch)
    assert total2.item() == pytest.approx(total.item(), rel=1e-6)
    # and the threshold map only counts inside thresh_mask
    off = batch.thresh_mask == 0
    changed = dict(pred, thresh=torch.where(off, torch.rand_like(pred["thresh"]), pred["thresh"]))
    assert DBLoss()(changed, batch)[1]["loss/thresh"].item() == pytest.approx(parts["loss/thresh"].item(), rel=1e-6)


def test_training_steps_reduce_the_loss():
    batch = square_targets(64)
    torch.manual_seed(0)
    image = torch.randn(1, 3, 64, 64) * 0.1
    image[:, :, batch.prob[0] > 0] += 1.0  # text is brighter
    model = tiny().train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss = DBLoss()
    losses = []
    for _ in range(10):
        total, _ = loss(model(image), batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.8 * losses[0] and losses[-1] == min(losses), losses


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loss_is_float32_under_autocast(dtype):
    batch = square_targets()
    model = tiny().train()
    x = torch.randn(1, 3, 64, 64)
    ref_total, _ = DBLoss()(model(x), batch)
    with torch.autocast("cpu", dtype=dtype):
        out = model(x)
        total, parts = DBLoss()(out, batch)
    assert out["prob"].dtype == torch.float32 and total.dtype == torch.float32
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())
    assert total.item() == pytest.approx(ref_total.item(), rel=0.1)
    total.backward()
