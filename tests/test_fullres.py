"""Full-resolution transfer: a colour change fitted at 256x256 lands on the full photo with its detail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recolorize.imaging import resize_for_network
from recolorize.torch_inference.fullres import apply_affine, fit_local_affine, full_resolution_transfer

M1 = torch.tensor([[0.80, 0.10, 0.00], [0.05, 0.85, 0.05], [0.00, 0.15, 0.70]])
B1 = torch.tensor([0.05, 0.02, 0.10])
M2 = torch.tensor([[0.60, 0.00, 0.20], [0.10, 0.70, 0.00], [0.20, 0.10, 0.60]])
B2 = torch.tensor([0.15, 0.10, 0.05])


def affine(image: torch.Tensor, m: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row sums of m plus b stay within [0, 1], so no clipping hides errors."""
    return torch.einsum("ij,bjhw->bihw", m, image) + b[None, :, None, None]


def gradient_magnitude(image: torch.Tensor) -> torch.Tensor:
    dx = image[..., 1:-1, 2:] - image[..., 1:-1, :-2]
    dy = image[..., 2:, 1:-1] - image[..., :-2, 1:-1]
    return torch.sqrt(dx**2 + dy**2).sum(1)


@pytest.fixture(scope="module")
def full_photo(shared_data: Path) -> torch.Tensor:
    candidates = sorted((shared_data / "dpst" / "input").glob("*.png")) + sorted(
        (shared_data / "bsds500" / "images" / "test").glob("*.jpg")
    )
    if not candidates:
        pytest.skip(f"no DPST or BSDS500 photo under {shared_data}")
    with Image.open(candidates[0]) as im:
        rgb = im.convert("RGB").resize((2000, 1500), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


def test_global_affine_change_is_reproduced_with_edges(full_photo: torch.Tensor) -> None:
    truth = affine(full_photo, M1, B1)
    before, after = resize_for_network(full_photo, 256), resize_for_network(truth, 256)
    assert before.shape == (1, 3, 256, 256)
    out = full_resolution_transfer(full_photo, before, after)
    assert out.shape == full_photo.shape and out.dtype == torch.float32

    mae = (out - truth).abs().mean().item() * 255
    assert mae < 1.0, mae
    naive = torch.nn.functional.interpolate(after, size=(1500, 2000), mode="bilinear", align_corners=False)
    assert (naive - truth).abs().mean().item() * 255 > 3 * mae  # upsampling the result would blur detail

    g_out, g_truth = gradient_magnitude(out), gradient_magnitude(truth)
    rel = abs(g_out.mean().item() / g_truth.mean().item() - 1)
    corr = torch.corrcoef(torch.stack([g_out.flatten(), g_truth.flatten()]))[0, 1].item()
    assert rel < 0.02 and corr > 0.99, (rel, corr)


def test_before_equal_after_returns_the_source_exactly(full_photo: torch.Tensor) -> None:
    low = resize_for_network(full_photo, 256)
    out = full_resolution_transfer(full_photo, low, low.clone())
    assert (out - full_photo).abs().max().item() < 1e-6


def test_local_change_is_reproduced_away_from_the_boundary(full_photo: torch.Tensor) -> None:
    width = full_photo.shape[-1]
    left = torch.arange(width) < width // 2
    truth = torch.where(left, affine(full_photo, M1, B1), affine(full_photo, M2, B2))
    out = full_resolution_transfer(
        full_photo, resize_for_network(full_photo, 256), resize_for_network(truth, 256)
    )

    # The transform's footprint is ~2 x radius working pixels (fit + smoothing) plus the resize filters:
    # 10 working pixels = 78 full-resolution pixels; keep 120 away from the seam.
    away = (torch.arange(width) - width // 2).abs() > 120
    err = (out - truth).abs()[..., away]
    assert err.mean().item() * 255 < 1.5, err.mean().item() * 255
    # The halves really were re-coloured differently, and each got its own transform.
    swapped = torch.where(left, affine(full_photo, M2, B2), affine(full_photo, M1, B1))
    assert (out - swapped).abs()[..., away].mean().item() * 255 > 10


def test_tiling_and_batching_do_not_change_the_result() -> None:
    torch.manual_seed(0)
    src = torch.rand(2, 3, 97, 131)
    before = resize_for_network(src, (24, 32))
    after = torch.stack([affine(before[:1], M1, B1)[0], affine(before[1:], M2, B2)[0]])
    dmat, c = fit_local_affine(before, after, radius=2, eps=1e-4)
    assert dmat.shape == (2, 3, 3, 24, 32) and c.shape == (2, 3, 24, 32)
    whole = apply_affine(src, dmat, c, tile_rows=1000)
    for rows in (1, 7, 40):
        assert torch.equal(apply_affine(src, dmat, c, tile_rows=rows), whole)
    single = apply_affine(src[1:], dmat[1:], c[1:])
    assert torch.equal(single[0], whole[1])


def test_fit_matches_per_window_ridge_least_squares() -> None:
    """The box-filter algebra equals solving every window's ridge problem directly, then averaging."""
    rng = np.random.default_rng(0)
    h, w, r, eps = 12, 15, 2, 1e-3
    p = rng.random((h, w, 3))
    q = np.clip(p @ rng.normal(0.8, 0.3, (3, 3)).T * 0.5 + rng.normal(0, 0.05, (h, w, 3)), 0, 1)
    d = q - p
    dk, ck = np.zeros((h, w, 3, 3)), np.zeros((h, w, 3))
    for y in range(h):
        for x in range(w):
            win = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
            pw, dw = p[win].reshape(-1, 3), d[win].reshape(-1, 3)
            pc, dc = pw - pw.mean(0), dw - dw.mean(0)
            n = len(pw)
            dt = np.linalg.solve(pc.T @ pc / n + eps * np.eye(3), pc.T @ dc / n)  # D transposed
            dk[y, x], ck[y, x] = dt.T, dw.mean(0) - dt.T @ pw.mean(0)
    d_ref, c_ref = np.zeros_like(dk), np.zeros_like(ck)
    for y in range(h):
        for x in range(w):
            win = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
            d_ref[y, x], c_ref[y, x] = dk[win].mean((0, 1)), ck[win].mean((0, 1))

    to_t = lambda a: torch.from_numpy(a).float().permute(2, 0, 1)[None]  # noqa: E731
    dmat, c = fit_local_affine(to_t(p), to_t(q), radius=r, eps=eps)
    assert np.abs(dmat[0].permute(2, 3, 0, 1).numpy() - d_ref).max() < 1e-4
    assert np.abs(c[0].permute(1, 2, 0).numpy() - c_ref).max() < 1e-4


def test_fit_recovers_a_known_matrix() -> None:
    torch.manual_seed(1)
    before = torch.rand(1, 3, 48, 48)
    dmat, c = fit_local_affine(before, affine(before, M1, B1), radius=3, eps=1e-6)
    a = dmat[0, :, :, 10:-10, 10:-10] + torch.eye(3)[:, :, None, None]
    assert (a - M1[:, :, None, None]).abs().max().item() < 1e-3  # row = output channel
    assert (c[0, :, 10:-10, 10:-10] - B1[:, None, None]).abs().max().item() < 1e-3


def test_apply_matches_bilinear_upsampling_of_the_coefficients() -> None:
    """Pixel-centre-aligned bilinear upsampling, as F.interpolate(align_corners=False) does it."""
    torch.manual_seed(2)
    src = torch.rand(1, 3, 61, 83)
    dmat, c = 0.3 * torch.randn(1, 3, 3, 9, 13), 0.2 * torch.randn(1, 3, 9, 13)
    up = torch.nn.functional.interpolate(
        torch.cat([dmat.reshape(1, 9, 9, 13), c], 1), size=(61, 83), mode="bilinear", align_corners=False
    )
    ref = src + torch.einsum("bijhw,bjhw->bihw", up[:, :9].reshape(1, 3, 3, 61, 83), src) + up[:, 9:]
    out = apply_affine(src, dmat, c, tile_rows=5, clamp=False)
    assert (out - ref).abs().max().item() < 1e-5
    assert torch.equal(apply_affine(src, dmat, c), out.clamp(0, 1))


def test_identity_fit_and_validation() -> None:
    low = torch.rand(1, 3, 32, 32)
    dmat, c = fit_local_affine(low, low)
    assert torch.count_nonzero(dmat) == 0 and torch.count_nonzero(c) == 0
    with pytest.raises(ValueError):
        fit_local_affine(low, torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError):
        fit_local_affine(low, low, eps=0.0)


def test_resize_for_network_antialiases() -> None:
    checker = ((torch.arange(512)[:, None] + torch.arange(512)[None]) % 2).float().expand(1, 3, 512, 512)
    small = resize_for_network(checker, 64)
    assert small.shape == (1, 3, 64, 64)
    assert (small - 0.5).abs().max().item() < 0.02  # aliasing would give stripes of 0 and 1
    assert torch.equal(resize_for_network(small, (64, 64)), small)
