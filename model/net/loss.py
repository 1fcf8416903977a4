"""DBNet loss: balanced BCE on the probability map, L1 on the threshold map, Dice on the binary map.

    total = prob_map_loss_weight · BCE_ohem(P) + thresh_map_loss_weight · L1(T) + binary_map_loss_weight · Dice(B)

with the seed baseline's weights 5 / 10 / 1.

* BCE with hard-negative mining, over the whole batch: positives are text pixels inside
  `prob_mask`; of the non-text pixels inside it, only the k with the largest loss count,
  k = min(#negatives, negative_ratio · #positives) (3:1). The sum over positives and those
  negatives is divided by (#positives + k). Computed from "prob_logits" when the prediction has
  them (exact, no clamping), otherwise from "prob". A batch without any text pixel gives 0 (as in
  DBNet: no positives, no negatives).
* Dice on the approximate binary map against the probability target, inside `prob_mask`.
* L1 on the threshold map inside `thresh_mask` (the padded text regions), mean over the mask.

Everything is computed in float32 with autocast off, so fp16/bf16 training is safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TARGETS = ("prob", "prob_mask", "thresh", "thresh_mask")


class DBLoss(nn.Module):
    def __init__(
        self,
        cfg: Mapping[str, Any] | None = None,
        *,
        negative_ratio: float = 3.0,
        prob_map_loss_weight: float = 5.0,
        thresh_map_loss_weight: float = 10.0,
        binary_map_loss_weight: float = 1.0,
        eps: float = 1e-6,
    ):
        """`cfg` is the config's `models.loss` section; its keys override the keyword defaults."""
        super().__init__()
        values = dict(
            negative_ratio=negative_ratio,
            prob_map_loss_weight=prob_map_loss_weight,
            thresh_map_loss_weight=thresh_map_loss_weight,
            binary_map_loss_weight=binary_map_loss_weight,
            eps=eps,
        )
        if cfg is not None:
            unknown = sorted(set(cfg) - set(values))
            if unknown:
                raise ValueError(f"models.loss: unknown setting(s) {unknown}; known: {sorted(values)}")
            values.update({k: float(v) for k, v in cfg.items()})
        self.negative_ratio = values["negative_ratio"]
        self.weights = {
            "prob": values["prob_map_loss_weight"],
            "thresh": values["thresh_map_loss_weight"],
            "binary": values["binary_map_loss_weight"],
        }
        self.eps = values["eps"]

    def forward(self, pred: Mapping[str, torch.Tensor], batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`batch`: a `Batch` after `.to(device)` or a mapping with prob, prob_mask, thresh, thresh_mask (N, H, W)."""
        gt, mask, thresh, thresh_mask = (_get(batch, k).float() for k in TARGETS)
        with torch.autocast(device_type=gt.device.type, enabled=False):
            logits = pred.get("prob_logits")
            if logits is not None:
                prob_loss = self.balanced_bce(logits.float(), gt, mask, logits=True)
            else:
                prob_loss = self.balanced_bce(pred["prob"].float(), gt, mask, logits=False)
            parts = {
                "loss/prob": prob_loss,
                "loss/thresh": masked_l1(pred["thresh"].float(), thresh, thresh_mask, self.eps),
                "loss/binary": dice(pred["binary"].float(), gt, mask, self.eps),
            }
            total = (
                self.weights["prob"] * parts["loss/prob"]
                + self.weights["thresh"] * parts["loss/thresh"]
                + self.weights["binary"] * parts["loss/binary"]
            )
        return total, parts

    def balanced_bce(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, *, logits: bool) -> torch.Tensor:
        positive = gt * mask
        negative = (1 - gt) * mask
        n_pos = int(positive.sum().item())
        n_neg = min(int(negative.sum().item()), int(n_pos * self.negative_ratio))
        if logits:
            loss = F.binary_cross_entropy_with_logits(pred, gt, reduction="none")
        else:
            loss = F.binary_cross_entropy(pred.clamp(self.eps, 1 - self.eps), gt, reduction="none")
        pos_loss = (loss * positive).sum()
        neg_loss = (loss * negative).flatten().topk(n_neg, sorted=False).values.sum() if n_neg else loss.new_zeros(())
        return (pos_loss + neg_loss) / (n_pos + n_neg + self.eps)


def dice(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    inter = (pred * gt * mask).sum()
    union = (pred * mask).sum() + (gt * mask).sum() + eps
    return 1 - 2 * inter / union


def masked_l1(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return ((pred - gt).abs() * mask).sum() / (mask.sum() + eps)


def _get(batch: Any, key: str) -> torch.Tensor:
    value = batch.get(key) if isinstance(batch, Mapping) else getattr(batch, key, None)
    if value is None:
        raise ValueError(f"DBLoss needs the target map {key!r}; build the dataset with targets")
    return value
