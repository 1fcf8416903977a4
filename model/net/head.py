"""DB head: probability and threshold maps at input resolution, and the approximate binary map.

Each branch: conv3×3 (in → in/4) - BN - ReLU, then log2(upscale) ConvTranspose2d ×2 (BN-ReLU
between them) to one channel at stride 1. Sigmoids run in float32, so maps made under fp16/bf16
autocast are float32 and the loss sees exact probabilities. Binary map (differentiable
binarization): B = 1 / (1 + exp(-k (P - T))), k = 50.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def branch(in_channels: int, upscale: int, *, bias_init: float = 0.0) -> nn.Sequential:
    if upscale < 2 or 2 ** round(math.log2(upscale)) != upscale:
        raise ValueError(f"models.head.upscale must be a power of two >= 2, got {upscale}")
    mid = max(in_channels // 4, 1)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, mid, 3, padding=1, bias=False),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
    ]
    for _ in range(round(math.log2(upscale)) - 1):
        layers += [nn.ConvTranspose2d(mid, mid, 2, stride=2), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)]
    last = nn.ConvTranspose2d(mid, 1, 2, stride=2)
    layers.append(last)
    for m in layers:
        # Each output pixel of a stride-2, 2×2 transposed conv sees one tap per input channel: its
        # fan-in is in_channels (torch's default counts out_channels·k·k, 4 for the last layer,
        # and so starts with saturated sigmoids that do not learn).
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.ConvTranspose2d):
            gain = 1.0 if m is last else math.sqrt(2.0)
            nn.init.normal_(m.weight, 0.0, gain / math.sqrt(m.in_channels))
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.constant_(last.bias, bias_init)
    return nn.Sequential(*layers)


class DBHead(nn.Module):
    """`forward(fused, all_maps)` -> {"prob", "prob_logits"} (+ "thresh", "binary"), each (N, H, W)."""

    def __init__(self, in_channels: int, *, k: float = 50.0, upscale: int = 4):
        super().__init__()
        self.k = k
        self.upscale = upscale
        # text covers a few percent of a receipt: start the probability map low (as focal-loss heads do)
        self.prob = branch(in_channels, upscale, bias_init=-2.0)
        self.thresh = branch(in_channels, upscale)

    def forward(self, x: torch.Tensor, all_maps: bool = True) -> dict[str, torch.Tensor]:
        logits = self.prob(x).squeeze(1).float()
        out = {"prob": torch.sigmoid(logits), "prob_logits": logits}
        if all_maps:
            thresh = torch.sigmoid(self.thresh(x).squeeze(1).float())
            out["thresh"] = thresh
            out["binary"] = torch.sigmoid(self.k * (out["prob"] - thresh))
        return out
