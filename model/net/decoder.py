"""UNet-style top-down decoder (DBNet's FPN): one fused map at the finest level's stride.

Each level: 1×1 lateral conv to `inner_channels`; coarse to fine, each level adds its coarser
neighbour upsampled (nearest); a 3×3 conv takes every level to `output_channels`; all levels are
upsampled to the finest one and concatenated, coarsest first (DBNet's order): `len(levels) ×
output_channels` channels (4 × 64 = 256 by default) at stride `strides[0]` (4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class UNetDecoder(nn.Module):
    def __init__(self, in_channels: Sequence[int], *, inner_channels: int = 256, output_channels: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, inner_channels, 1, bias=False) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(inner_channels, output_channels, 3, padding=1, bias=False) for _ in in_channels
        )
        self.out_channels = output_channels * len(in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = [conv(f) for conv, f in zip(self.lateral, features)]
        for i in range(len(x) - 1, 0, -1):
            x[i - 1] = x[i - 1] + F.interpolate(x[i], size=x[i - 1].shape[-2:], mode="nearest")
        size = x[0].shape[-2:]
        out = [conv(level) for conv, level in zip(self.output, x)]
        out = [o if o.shape[-2:] == size else F.interpolate(o, size=size, mode="nearest") for o in out]
        return torch.cat(out[::-1], dim=1)
