"""ASPP (DeepLab v3) whose image-pooling branch is replaced by the code w (paper section 3.4.3)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ASPP", "PlainConvBlock"]


class GlobalBranch(nn.Module):
    """The global branch: w (B, w_dim) projected and broadcast, or, with ``use_w`` off (Table 2 "w/o w"),
    DeepLab's global average of the input features."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, use_w: bool) -> None:
        super().__init__()
        self.use_w = use_w
        self.project = nn.Linear(w_dim if use_w else in_ch, out_ch)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        if self.use_w:
            if w is None:
                raise ValueError("this ASPP is fed by w; pass w = E_w(I_S, I_R)")
            pooled = w
        else:
            pooled = x.mean(dim=(2, 3))
        out = torch.relu(self.project(pooled))
        return out[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])


class ASPP(nn.Module):
    """A 1x1 branch, three dilated 3x3 branches and the global branch, fused by a 1x1 convolution."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, use_w: bool, rates: tuple[int, ...] = (2, 4, 6)):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True))])
        for rate in rates:
            self.branches.append(
                nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=rate, dilation=rate), nn.ReLU(inplace=True))
            )
        self.global_branch = GlobalBranch(in_ch, out_ch, w_dim, use_w)
        self.fuse = nn.Sequential(nn.Conv2d(out_ch * (len(rates) + 2), out_ch, 1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.global_branch(x, w))
        return self.fuse(torch.cat(outs, dim=1))


class PlainConvBlock(nn.Module):
    """Table 2's "w/o ASPP": two 3x3 convolutions (small receptive field) plus the same global branch."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, use_w: bool) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
        )
        self.global_branch = GlobalBranch(in_ch, out_ch, w_dim, use_w)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        return torch.relu(self.convs(x) + self.global_branch(x, w))
