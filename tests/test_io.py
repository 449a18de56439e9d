"""Atomic writes: byte-deterministic tensors, whole files only."""

from __future__ import annotations

from pathlib import Path

import torch

from dhns.io import atomic_torch_save


def test_same_tensor_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    obj = {"weights": torch.arange(12.0).reshape(3, 4), "meta": {"name": "x", "n": 3}}
    atomic_torch_save(tmp_path / "a.pt", obj)
    atomic_torch_save(tmp_path / "b.pt", obj)  # another name: the bytes must not depend on it
    first = (tmp_path / "a.pt").read_bytes()
    atomic_torch_save(tmp_path / "a.pt", obj)
    assert (tmp_path / "a.pt").read_bytes() == first == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["weights"],
                       obj["weights"])
    assert not list(tmp_path.glob(".*.tmp"))
