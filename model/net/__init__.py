"""DBNet: timm backbone → UNet decoder → DB head. `build_model(cfg.models)` makes one from the config.

Input: the normalised float image (N, 3, H, W) from `Batch.to(device)`, H and W multiples of the
backbone's coarsest stride (32). Output, a dict of (N, H, W) float32 maps at input resolution:
"prob" (text probability), "prob_logits" (its logits, for an exact BCE), and when `all_maps`
(default: in training mode) "thresh" and "binary". Prediction only needs "prob", so eval mode
skips the threshold branch unless asked: `model(image, all_maps=True)` for a validation loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from model.errors import ConfigError
from model.net.backbone import Backbone, load_weights, read_state_dict
from model.net.decoder import UNetDecoder
from model.net.head import DBHead
from model.net.loss import DBLoss

__all__ = ["DBNet", "DBLoss", "Backbone", "UNetDecoder", "DBHead", "build_model", "load_weights", "read_state_dict"]


class DBNet(nn.Module):
    def __init__(self, encoder: Backbone, decoder: UNetDecoder, head: DBHead):
        super().__init__()
        if head.upscale != encoder.strides[0]:
            raise ConfigError(upscale_mismatch(head.upscale, encoder))
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.stride = max(encoder.strides)

    def forward(self, image: torch.Tensor, all_maps: bool | None = None) -> dict[str, torch.Tensor]:
        h, w = image.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"DBNet input {h}x{w}: height and width must be multiples of {self.stride}")
        fused = self.decoder(self.encoder(image))
        return self.head(fused, all_maps=self.training if all_maps is None else all_maps)


def upscale_mismatch(upscale: int, encoder: Backbone) -> str:
    """Why `upscale` does not fit the encoder's levels, and the settings that do."""
    finest = encoder.strides[0]
    fits = [i for i, s in enumerate(encoder.level_strides) if s == upscale and i <= max(encoder.out_indices)]
    if fits:
        indices = [fits[0]] + [i for i in encoder.out_indices if i > fits[0]]
        other = (
            f", or models.encoder.out_indices={indices} for upscale={upscale} (level {fits[0]} has stride {upscale})"
        )
    else:
        other = f" ({upscale} is the stride of no level; the levels' strides are {encoder.level_strides})"
    return (
        f"models.head.upscale={upscale} must equal the stride of the finest feature level ({finest}: level "
        f"{encoder.out_indices[0]} of models.encoder.out_indices={encoder.out_indices}, strides {encoder.strides}); "
        f"set models.head.upscale={finest}{other}"
    )


def build_model(cfg: Mapping[str, Any]) -> DBNet:
    """A DBNet from the `models` section of the config (encoder, decoder, head; loss is separate)."""
    enc, dec, head = cfg["encoder"], cfg["decoder"], cfg["head"]
    encoder = Backbone(
        enc["model_name"],
        pretrained=bool(enc.get("pretrained", False)),
        weights=enc.get("weights"),
        out_indices=list(enc.get("out_indices", (1, 2, 3, 4))),
    )
    decoder = UNetDecoder(
        encoder.channels, inner_channels=int(dec["inner_channels"]), output_channels=int(dec["output_channels"])
    )
    return DBNet(encoder, decoder, DBHead(decoder.out_channels, k=float(head["k"]), upscale=int(head["upscale"])))
