"""The one params schema: typed dataclasses mirroring ``params.yaml``.

Every option lives in ``params.yaml`` with a comment; this module only says its type and
default. Loading is strict (LibKGE-style): unknown keys and wrong types raise
:class:`ConfigError` naming the dotted key, so a typo in ``dvc exp run -S`` fails loudly
instead of silently training the default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A params file or override that does not match the schema."""


@dataclass
class SyntheticConfig:
    num_entities: int = 600
    num_types: int = 6
    num_relations: int = 12
    triples_per_relation: int = 400
    attributes_per_entity: int = 3
    missing_text: float = 0.1
    missing_image: float = 0.1
    image_size: int = 32
    seed: int = 0


@dataclass
class DataConfig:
    name: str = "synthetic"
    dir: str = "data"
    clean_valid: bool = True
    min_valid: int = 500
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class TextFeatureConfig:
    enabled: bool = True
    model: str = "builtin:all-MiniLM-L6-v2"
    template: str = "{name}. {description}"
    max_length: int = 64
    batch_size: int = 64
    precomputed: str | None = None


@dataclass
class ImageFeatureConfig:
    enabled: bool = True
    backbone: str = "mobilenetv2_100"
    weights: str = "builtin"
    max_per_entity: int = 3
    batch_size: int = 32
    precomputed: str | None = None


@dataclass
class FeaturesConfig:
    text: TextFeatureConfig = field(default_factory=TextFeatureConfig)
    image: ImageFeatureConfig = field(default_factory=ImageFeatureConfig)


@dataclass
class KGEConfig:
    model: Literal["rotate", "transe", "distmult", "complex"] = "rotate"
    dim: int = 64
    modalities: list[str] = field(default_factory=lambda: ["structure", "text", "image"])
    gamma: float = 6.0
    adversarial_temperature: float = 1.0
    num_negatives: int = 64
    negative_sampler: Literal["uniform", "bernoulli"] = "uniform"
    compile: bool = True


@dataclass
class PretrainConfig:
    epochs: int = 60
    batch_size: int = 512
    lr: float = 0.002
    eval_every: int = 5
    patience: int = 4
    max_valid: int = 2000


@dataclass
class DiffusionConfig:
    steps: int = 50
    schedule: Literal["linear", "linear1000", "cosine"] = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sampling_steps: int = 10
    hidden_mult: int = 4
    levels: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.5])
    modalities: list[str] = field(default_factory=lambda: ["structure", "text", "image"])
    epochs: int = 30
    batch_size: int = 1024
    lr: float = 0.001


@dataclass
class RetrainConfig:
    sampler: Literal["dhns", "uniform"] = "dhns"
    epochs: int = 20
    batch_size: int = 512
    lr: float = 0.0005
    lambda_ha: float = 0.01
    level_weights: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.0, 0.5])
    level_margins: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 0.9])
    margins: bool = True
    ha_weighting: Literal["mean", "adversarial"] = "mean"
    joint: bool = False
    refresh_every: int = 4
    generate_fraction: float = 0.0625
    faithful: bool = False
    eval_every: int = 5


@dataclass
class EvalConfig:
    batch_size: int = 256
    split: Literal["valid", "test"] = "test"


@dataclass
class Params:
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    kge: KGEConfig = field(default_factory=KGEConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    model: DiffusionConfig = field(default_factory=DiffusionConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against ``annotation`` (a resolved type), coercing the safe cases."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(annotation, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not one of {choices}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        # YAML 1.1 reads `1e-06` (as `dvc exp run -S` writes it) as a string: accept it.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {annotation}")  # pragma: no cover


def _build(cls: type, raw: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]} (known under {prefix or 'top level'}: "
            f"{', '.join(sorted(names))})"
        )
    kwargs = {}
    for name in names & set(raw):
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(raw[name], hints[name], key)
    return cls(**kwargs)


def params_from_dict(raw: dict | None) -> Params:
    """Validate a nested mapping into :class:`Params`; missing keys take their defaults."""
    return _build(Params, raw or {})


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file. Raises :class:`ConfigError` with the file name."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return params_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def to_dict(params: Any) -> dict:
    """Plain nested dict of a params dataclass (for checkpoints and reports)."""
    return dataclasses.asdict(params)
