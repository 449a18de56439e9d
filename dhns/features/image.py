"""Image features: a timm CNN's pooled features, averaged over an entity's images."""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import timm
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn
from tqdm import tqdm

from dhns.config import ImageFeatureConfig
from dhns.data.kg import KnowledgeGraph
from dhns.errors import UserError
from dhns.features.table import FeatureTable
from dhns.features.weights import WeightMappingError, load_builtin, load_mapped

#: how many skipped image paths ``meta["skipped_sample"]`` (and their reasons,
#: ``meta["skipped_reasons"]``) keeps
SKIPPED_SAMPLE = 20


def build_image_model(backbone: str, weights: str = "builtin") -> tuple[nn.Module, str]:
    """The timm model ``backbone`` *with* its classifier head, in eval mode, on the CPU.

    ``weights``: ``"builtin"`` (shipped ImageNet weights, see :mod:`dhns.features.weights`),
    ``"timm"`` (timm's own pretrained download: online only), ``"none"`` (random init: tests
    and smoke runs), or a path to a timm-format state dict (a headless one gives a model
    without classifier). Returns ``(model, description of the weights)``.
    """
    if weights == "timm":
        return timm.create_model(backbone, pretrained=True).eval(), "timm"
    # pretrained=False everywhere else: timm must never try to download.
    if weights == "builtin":
        model = timm.create_model(backbone, pretrained=False)
        path = load_builtin(model, backbone)
        return model.eval(), f"builtin:{path.name}"
    if weights == "none":
        return timm.create_model(backbone, pretrained=False).eval(), "none (random)"
    path = Path(weights)
    if not path.is_file():
        raise UserError(
            f"image weights {weights!r}: not 'builtin', 'timm', 'none' or an existing file"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict, got {type(state).__name__}")
    has_head = any(k.startswith("classifier.") for k in state)
    extra = {} if has_head else {"num_classes": 0}
    model = timm.create_model(backbone, pretrained=False, **extra)
    try:
        load_mapped(model, state, source=f"weights {path}")
    except WeightMappingError as exc:
        hint = f"(expected a timm state dict for {backbone!r})"
        raise WeightMappingError(f"{exc}\n  {hint}") from None
    return model.eval(), str(path)


def _image_files(directory: str) -> list[str]:
    """Regular, non-hidden files of ``directory``, sorted by name ([] if it does not exist)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [
        os.path.join(directory, n) for n in names
        if not n.startswith(".") and os.path.isfile(os.path.join(directory, n))
    ]


def _open_rgb(path: str) -> tuple[Image.Image | None, str]:
    """``(decoded RGB image, "")``, or ``(None, reason)`` for what PIL cannot read.

    Reasons: ``zero bytes``, ``not an image``, ``decompression bomb`` (more pixels than
    PIL's ``Image.MAX_IMAGE_PIXELS``), ``corrupt`` (truncated or undecodable data).
    """
    try:
        if os.path.getsize(path) == 0:
            return None, "zero bytes"
        with warnings.catch_warnings():
            # Palette-with-transparency and EXIF warnings are noise at dataset scale; PIL's
            # bomb *warning* (over MAX_IMAGE_PIXELS, under twice that) is a skip, like its error.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                if img.mode in ("P", "LA", "PA"):
                    img = img.convert("RGBA")
                return img.convert("RGB"), ""
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, "decompression bomb"
    except UnidentifiedImageError:
        return None, "not an image"
    except Exception:  # noqa: BLE001 - any decoder failure means "skip this file"
        return None, "corrupt"


def skipped_summary(meta: dict, shown: int = 3) -> str | None:
    """``image features: skipped 3 of 120 images (first: a.png (zero bytes), ...)``, or
    ``None`` when nothing was skipped; ``meta`` is an image feature table's meta."""
    skipped = int(meta.get("skipped_images") or 0)
    if not skipped:
        return None
    tried = skipped + int(meta.get("images_used") or 0)
    reasons = meta.get("skipped_reasons") or []
    first = [f"{path} ({reason})" for path, reason in
             zip(meta.get("skipped_sample") or [], reasons, strict=False)][:shown]
    more = ", ..." if skipped > len(first) else ""
    detail = f" (first: {', '.join(first)}{more})" if first else ""
    return f"image features: skipped {skipped} of {tried} images{detail}"


def extract_image_features(
    kg: KnowledgeGraph,
    cfg: ImageFeatureConfig,
    device: torch.device,
    progress: bool = True,
    model: nn.Module | None = None,
) -> FeatureTable:
    """Mean pooled CNN feature of up to ``cfg.max_per_entity`` images per entity.

    Files of each entity's ``image_dirs`` folder are tried in name order; unreadable ones are
    skipped and counted by reason (they do not use up the per-entity quota; see
    :func:`skipped_summary` for the log line). Images of all entities are
    batched together (``cfg.batch_size``) and the per-image features ``(d,)`` are summed into
    their entity's row, then divided by the entity's image count.

    Args:
        model: an already built timm model (with or without head) to reuse instead of
            building ``cfg.backbone`` with ``cfg.weights``.

    Returns:
        FeatureTable with ``features`` ``(N, d)`` (``d`` = the backbone's ``num_features``,
        1280 for ``mobilenetv2_100``); ``mask[i]`` False and a zero row where entity ``i`` has
        no usable image.
    """
    start = time.perf_counter()
    weights_desc = "given model"
    if model is None:
        model, weights_desc = build_image_model(cfg.backbone, cfg.weights)
    data_cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**data_cfg, is_training=False)
    model = model.to(device).eval()
    dim = model.num_features

    n = kg.num_entities
    sums = torch.zeros(n, dim, dtype=torch.float64)  # float64 sums: exact averages
    counts = torch.zeros(n, dtype=torch.long)
    skipped: list[tuple[str, str]] = []  # (path, reason)
    missing_dirs = 0

    def images() -> Iterator[tuple[int, torch.Tensor]]:
        nonlocal missing_dirs
        for ent, directory in enumerate(kg.image_dirs):
            if not directory:
                continue
            if not os.path.isdir(directory):
                missing_dirs += 1
                continue
            used = 0
            for path in _image_files(directory):
                if used >= cfg.max_per_entity:
                    break
                img, reason = _open_rgb(path)
                if img is None:
                    skipped.append((path, reason))
                    continue
                try:
                    tensor = transform(img)
                except Exception:  # noqa: BLE001 - e.g. a 0-pixel image
                    skipped.append((path, "cannot be resized"))
                    continue
                used += 1
                yield ent, tensor

    def flush(ents: list[int], batch: list[torch.Tensor]) -> None:
        # Pooled features, classifier skipped (works with or without a head, no mutation).
        x = model.forward_features(torch.stack(batch).to(device))
        feats = model.forward_head(x, pre_logits=True).flatten(1).to("cpu", torch.float64)
        idx = torch.tensor(ents)
        sums.index_add_(0, idx, feats)
        counts.index_add_(0, idx, torch.ones_like(idx))

    with_dir = sum(bool(d) for d in kg.image_dirs)
    bar = tqdm(total=with_dir, desc=f"image features ({cfg.backbone})", unit="ent",
               disable=not progress)
    ents: list[int] = []
    batch: list[torch.Tensor] = []
    last_ent = -1
    try:
        with torch.inference_mode():
            for ent, tensor in images():
                if ent != last_ent:
                    bar.update(1)  # per entity started: cheap and close enough
                    last_ent = ent
                ents.append(ent)
                batch.append(tensor)
                if len(batch) >= cfg.batch_size:
                    flush(ents, batch)
                    ents, batch = [], []
            if batch:
                flush(ents, batch)
        bar.update(with_dir - bar.n)
    finally:
        bar.close()

    mask = counts > 0
    features = torch.zeros(n, dim, dtype=torch.float32)
    features[mask] = (sums[mask] / counts[mask, None]).float()
    seconds = time.perf_counter() - start
    meta = {
        "modality": "image",
        "model": cfg.backbone,
        "weights": weights_desc,
        "dim": dim,
        "num_entities": n,
        "with_modality": int(mask.sum()),
        "with_image_dir": with_dir,
        "missing_dirs": missing_dirs,
        "images_used": int(counts.sum()),
        "max_per_entity": cfg.max_per_entity,
        "skipped_images": len(skipped),
        "skipped_by_reason": dict(Counter(reason for _, reason in skipped)),
        "skipped_sample": [path for path, _ in skipped[:SKIPPED_SAMPLE]],
        "skipped_reasons": [reason for _, reason in skipped[:SKIPPED_SAMPLE]],
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in data_cfg.items()},
        "device": str(device),
        "seconds": round(seconds, 3),
        "entities_per_s": round(n / seconds, 2) if seconds > 0 else None,
    }
    return FeatureTable(features=features, mask=mask, meta=meta)
