"""The EfficientNet-Lite0 ``.pth`` is converted once to a safetensors cache (issue 11): same tensors, same
features, rebuilt when stale or damaged, and never in the way when its folder cannot be written."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from recolorize.networks.backbones import EfficientNetLite0
from recolorize.pretrained import loaders


@pytest.fixture
def pth(tmp_path: Path) -> Path:
    """A private copy of the package's ``.pth`` (its modification time can be changed)."""
    return Path(shutil.copy(loaders.efficientnet_lite0_path(), tmp_path / "efficientnet-lite0.pth"))


def refuse(path: Path) -> dict:
    raise AssertionError(f"the .pth {path} was read although its cache is valid")


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def test_cache_holds_the_same_tensors_and_is_read_instead_of_the_pth(pth: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    first = loaders.cached_torch_state(pth, folder)
    reference = loaders.load_torch_state(pth)
    assert len(cache_files(folder)) == 1
    again = loaders.cached_torch_state(pth, folder, fallback=refuse)  # the cache alone
    for state in (first, again):
        assert state.keys() == reference.keys() and len(state) == 296
        for name, tensor in reference.items():
            assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name


def test_cached_weights_give_identical_features(pth: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    loaders.cached_torch_state(pth, folder)
    from_cache, from_pth = EfficientNetLite0(pretrained=False), EfficientNetLite0(pretrained=False)
    from_cache.load_state_dict(loaders.cached_torch_state(pth, folder, fallback=refuse), strict=True)
    from_pth.load_state_dict(loaders.load_torch_state(pth), strict=True)
    image = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(
            from_cache.eval().features_1_8_and_1_16(image),
            from_pth.eval().features_1_8_and_1_16(image),
            strict=True,
        ):
            assert torch.equal(a, b)


def test_a_stale_cache_is_rebuilt(pth: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    loaders.cached_torch_state(pth, folder)
    info = pth.stat()
    os.utime(pth, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))  # the .pth was replaced
    calls = []

    def counted(path: Path) -> dict:
        calls.append(path)
        return loaders.load_torch_state(path)

    loaders.cached_torch_state(pth, folder, fallback=counted)
    assert calls == [pth]
    loaders.cached_torch_state(pth, folder, fallback=refuse)  # and the new cache is used from then on


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "garbage", "empty"])
def test_a_damaged_cache_is_rebuilt(pth: Path, tmp_path: Path, damage: str, caplog) -> None:
    folder = tmp_path / "cache"
    reference = loaders.cached_torch_state(pth, folder)
    (cache,) = cache_files(folder)
    data = bytearray(cache.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped byte":
        data[-1000] ^= 0x40  # inside a tensor: only the checksum can tell
    elif damage == "garbage":
        data = bytearray(b"not a safetensors file" * 10)
    else:
        data = bytearray()
    cache.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="recolorize.pretrained.loaders"):
        state = loaders.cached_torch_state(pth, folder)
    assert all(torch.equal(state[name], tensor) for name, tensor in reference.items())
    assert damage == "empty" or "rebuilding" in caplog.text
    loaders.cached_torch_state(pth, folder, fallback=refuse)  # repaired


def test_an_unwritable_cache_folder_falls_back_to_the_pth(pth: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    state = loaders.cached_torch_state(pth, blocker / "cache")
    assert len(state) == 296 and not (blocker / "cache").exists()


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(loaders.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert loaders.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(loaders.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert loaders.cache_dir() == tmp_path / "xdg" / "recolorize"
