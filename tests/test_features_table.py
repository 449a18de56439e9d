"""FeatureTable persistence, precomputed tables (MMKGC convention) and device resolution."""

from __future__ import annotations

import math

import pytest
import torch

from dhns.device import resolve_device
from dhns.features import FeatureTable, load_precomputed


def _table(n: int = 5, d: int = 3) -> FeatureTable:
    feats = torch.randn(n, d)
    mask = torch.tensor([True, False, True, True, False])[:n]
    feats[~mask] = 0
    return FeatureTable(feats, mask, {"model": "x", "dim": d, "seconds": 0.5})


def test_save_load_roundtrip(tmp_path):
    table = _table()
    path = tmp_path / "sub" / "text.pt"
    table.save(path)
    back = FeatureTable.load(path)
    assert torch.equal(back.features, table.features)
    assert torch.equal(back.mask, table.mask)
    assert back.meta == table.meta
    assert back.features.dtype == torch.float32 and back.mask.dtype == torch.bool
    # atomic write leaves no temporary files behind
    assert [p.name for p in path.parent.iterdir()] == ["text.pt"]
    # a plain dict of tensors: readable with weights_only=True (no pickled classes)
    assert isinstance(torch.load(path, weights_only=True), dict)


def test_constructor_casts_and_validates():
    t = FeatureTable(torch.ones(2, 3, dtype=torch.float64), torch.tensor([1, 0]))
    assert t.features.dtype == torch.float32 and t.mask.dtype == torch.bool
    assert t.num_entities == 2 and t.dim == 3
    with pytest.raises(ValueError, match="2-D"):
        FeatureTable(torch.ones(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask must have shape \(2,\)"):
        FeatureTable(torch.ones(2, 3), torch.ones(3, dtype=torch.bool))


def test_empty_is_one_zero_column_with_false_mask():
    t = FeatureTable.empty(4, "off")
    assert t.features.shape == (4, 1) and not t.features.any()
    assert not t.mask.any() and not t.enabled
    assert t.meta["disabled"] is True and t.meta["reason"] == "off"


def test_precomputed_tensor_zero_rows_are_missing(tmp_path):
    x = torch.randn(4, 6, dtype=torch.float64)
    x[2] = 0
    path = tmp_path / "DB15K-visual.pth"
    torch.save(x, path)
    t = load_precomputed(path, 4)
    assert t.mask.tolist() == [True, True, False, True]
    assert t.features.dtype == torch.float32
    assert torch.allclose(t.features, x.float())
    assert t.meta["dim"] == 6 and t.meta["with_modality"] == 3


def test_precomputed_wrong_rows_names_file_and_shapes(tmp_path):
    path = tmp_path / "DB15K-textual.pth"
    torch.save(torch.ones(3, 8), path)
    with pytest.raises(ValueError) as err:
        load_precomputed(path, 5)
    msg = str(err.value)
    assert "DB15K-textual.pth" in msg and "(5, d)" in msg and "(3, 8)" in msg


def test_precomputed_not_2d(tmp_path):
    path = tmp_path / "v.pth"
    torch.save(torch.ones(5), path)
    with pytest.raises(ValueError, match=r"v\.pth: expected a 2-D tensor .*got shape \(5,\)"):
        load_precomputed(path, 5)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_precomputed_non_finite_names_first_bad_row(tmp_path, bad):
    x = torch.ones(6, 2)
    x[3, 1] = bad
    x[5, 0] = bad
    path = tmp_path / "v.pth"
    torch.save(x, path)
    with pytest.raises(ValueError, match=r"v\.pth: non-finite .* row 3 .*2 bad row"):
        load_precomputed(path, 6)


def test_precomputed_accepts_feature_table_and_embedding_dicts(tmp_path):
    table = _table()
    table.features[0] = 0  # masked-in zero row: the saved mask wins over the zero-row rule
    path = tmp_path / "table.pt"
    table.save(path)
    back = load_precomputed(path, 5)
    assert torch.equal(back.mask, table.mask) and back.meta["model"] == "x"

    emb = tmp_path / "emb.pth"
    torch.save({"weight": torch.eye(5)}, emb)
    assert load_precomputed(emb, 5).mask.all()


def test_precomputed_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(ValueError, match="no such precomputed"):
        load_precomputed(tmp_path / "nope.pth", 3)
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="expected a \\(N, d\\) tensor"):
        load_precomputed(path, 3)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("cuda:x")
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda", 0)
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")
