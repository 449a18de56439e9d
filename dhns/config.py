"""The one params schema: typed dataclasses mirroring ``params.yaml``.

Every option lives in ``params.yaml`` with a comment; this module only says its type, default
and, for numbers, its range. Loading is strict (LibKGE-style): unknown keys, wrong types and
out-of-range values raise :class:`ConfigError` naming the dotted key, so a typo in
``dvc exp run -S`` fails loudly before any work instead of silently training the default (or
crashing after ten minutes of it).

Ranges are declared beside each field (``num(60, at_least(1))``) and apply to every item of a
list; the few rules that tie two keys together live in :func:`_check_cross`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dhns.errors import UserError


class ConfigError(UserError):
    """A params file or override that does not match the schema."""


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric param: ``low <= x <= high`` (``<`` where open)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return (f"in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}"
                f"{')' if self.high_open else ']'}")

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):  # YAML's .nan and .inf are floats too
            return False
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = (self.high is None
                   or (value < self.high if self.high_open else value <= self.high))
        return low_ok and high_ok


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def at_least(low: float) -> Range:
    return Range(low)


def above(low: float) -> Range:
    return Range(low, low_open=True)


def between(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Range:
    return Range(low, high, low_open, high_open)


COUNT = at_least(1)        # epochs, sizes, widths: zero of them is no run at all
NON_NEGATIVE = at_least(0)
POSITIVE = above(0)        # learning rates, margins: zero silently does nothing
FRACTION = between(0, 1)   # shares of entities
OPEN_UNIT = between(0, 1, low_open=True, high_open=True)
SEED = between(0, 2**32 - 1)  # numpy needs >= 0; torch's seed * 1000 + offset fits 64 bits


def num(default: float, bounds: Range) -> Any:
    """A numeric field with its allowed range (checked on load)."""
    return field(default=default, metadata={"range": bounds})


def nums(default: list[float], bounds: Range, increasing: bool = False) -> Any:
    """A non-empty list of numbers, each in ``bounds`` (``increasing``: strictly)."""
    return field(default_factory=lambda: list(default),
                 metadata={"range": bounds, "increasing": increasing})


@dataclass
class SyntheticConfig:
    # 10 entities: fewer leave the 80/10/10 split with empty valid or test sets.
    num_entities: int = num(600, at_least(10))
    num_types: int = num(6, COUNT)
    num_relations: int = num(12, COUNT)
    triples_per_relation: int = num(400, COUNT)
    attributes_per_entity: int = num(3, NON_NEGATIVE)
    missing_text: float = num(0.1, FRACTION)
    missing_image: float = num(0.1, FRACTION)
    image_size: int = num(32, COUNT)
    seed: int = num(0, SEED)
    # How a non-attribute relation picks its tails: groups (any of ~20 interchangeable
    # entities of the mapped group) or ring (the ring_spread entities nearest to a
    # relation-specific map of the head's position on its type's ring).
    structure: Literal["groups", "ring"] = "groups"
    ring_spread: int = num(3, COUNT)


@dataclass
class DataConfig:
    name: str = "synthetic"
    dir: str = "data"
    clean_valid: bool = True
    min_valid: int = num(500, NON_NEGATIVE)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class TextFeatureConfig:
    enabled: bool = True
    model: str = "builtin:all-MiniLM-L6-v2"
    template: str = "{name}. {description}"
    context_items: int = num(8, COUNT)  # relations / neighbours a template's context lists
    max_length: int = num(64, COUNT)
    batch_size: int = num(64, COUNT)
    precomputed: str | None = None


@dataclass
class ImageFeatureConfig:
    enabled: bool = True
    backbone: str = "mobilenetv2_100"
    weights: str = "builtin"
    max_per_entity: int = num(3, COUNT)
    batch_size: int = num(32, COUNT)
    precomputed: str | None = None


@dataclass
class FeaturesConfig:
    text: TextFeatureConfig = field(default_factory=TextFeatureConfig)
    image: ImageFeatureConfig = field(default_factory=ImageFeatureConfig)


@dataclass
class KGEConfig:
    model: Literal["rotate", "transe", "distmult", "complex"] = "rotate"
    dim: int = num(64, COUNT)
    modalities: list[str] = field(default_factory=lambda: ["structure", "text", "image"])
    gamma: float = num(6.0, POSITIVE)
    adversarial_temperature: float = num(1.0, NON_NEGATIVE)  # 0: plain mean over negatives
    num_negatives: int = num(64, COUNT)
    # A name in the sampler registry; checked, with sampler_options, when a training stage
    # builds it (dhns.samplers.sampler_options), so the data stages do not import samplers.
    negative_sampler: str = "uniform"
    # Per-sampler params, {name: {option: value}}; each checked against that sampler's Options.
    sampler_options: dict[str, dict] = field(default_factory=dict)
    compile: bool = True
    # Training regime: ns (self-adversarial negative sampling) or a cross-entropy one.
    loss: Literal["ns", "1vsall", "kvsall", "shared"] = "ns"
    label_smoothing: float = num(0.0, between(0, 1, high_open=True))
    shared_pool: int = num(2048, COUNT)  # kge.loss shared: entities in the batch's pool
    reciprocal: bool = False  # an inverse embedding per relation; head queries use it
    n3: float = num(0.0, NON_NEGATIVE)  # weight of the N3 penalty (0: off)
    # Lazy row updates of the entity table (dhns.optim.RowAdam): true, false or auto (from
    # dhns.training.kgc.SPARSE_FROM_ENTITIES entities, in the ns and shared regimes).
    sparse_updates: bool | Literal["auto"] = False


@dataclass
class PretrainConfig:
    epochs: int = num(60, COUNT)
    batch_size: int = num(512, COUNT)
    lr: float = num(0.002, POSITIVE)
    lr_schedule: Literal["constant", "step", "cosine"] = "constant"
    warmup_epochs: int = num(0, NON_NEGATIVE)
    eval_every: int = num(5, COUNT)
    patience: int = num(4, NON_NEGATIVE)  # 0: never stop early
    max_valid: int = num(2000, NON_NEGATIVE)  # 0: all of valid


@dataclass
class DiffusionConfig:
    # T = 1 has a single state, x_{T-1} ~ N(0, I): every "negative" would be pure noise.
    steps: int = num(50, at_least(2))
    schedule: Literal["linear", "linear1000", "cosine"] = "linear"
    beta_start: float = num(1e-4, OPEN_UNIT)
    beta_end: float = num(0.02, OPEN_UNIT)
    sampling_steps: int = num(10, COUNT)  # >= steps: the full ancestral chain
    hidden_mult: int = num(4, COUNT)
    # Fractions of T, hardest first; the level lists of `retrain` follow this order.
    levels: list[float] = nums([0.05, 0.1, 0.2, 0.5], OPEN_UNIT, increasing=True)
    modalities: list[str] = field(default_factory=lambda: ["structure", "text", "image"])
    epochs: int = num(30, COUNT)
    batch_size: int = num(1024, COUNT)
    lr: float = num(0.001, POSITIVE)


@dataclass
class RetrainConfig:
    negatives: Literal["dhns", "uniform"] = "dhns"
    # 0 epochs would only copy pretrain: the uniform baseline and DHNS would be the same model.
    epochs: int = num(20, COUNT)
    batch_size: int = num(512, COUNT)
    lr: float = num(0.0005, POSITIVE)
    lr_schedule: Literal["constant", "step", "cosine"] = "constant"
    warmup_epochs: int = num(0, NON_NEGATIVE)
    # The continuation's training regime; "pretrain" keeps kge.loss.
    loss: Literal["pretrain", "ns", "1vsall", "kvsall", "shared"] = "pretrain"
    lambda_ha: float = num(0.01, NON_NEGATIVE)
    level_weights: list[float] = nums([0.5, 1.0, 1.0, 0.5], NON_NEGATIVE)  # one per level
    level_margins: list[float] = nums([0.3, 0.5, 0.7, 0.9], NON_NEGATIVE)  # one per level
    margins: bool = True
    ha_weighting: Literal["mean", "adversarial"] = "mean"
    positive_term: bool = True  # false: L_HA without its -log s(f(pos)) in every cell
    # What fills L_HA's negatives: the diffusion model's states, or (a control) real entities
    # drawn uniformly in their place, with the same weight, levels and scoring.
    ha_source: Literal["generated", "random"] = "generated"
    # Leave out of L_HA the generated negatives whose nearest real entity is a known training
    # answer of their query (likely false negatives).
    ha_exclude_known: bool = False
    joint: bool = False
    # From what the continuation stages (uniform, retrain) start: the pretrained checkpoint,
    # or a fresh initialisation of its architecture (the reference's regime: DHNS from the
    # first epoch, with a freshly initialised sampler trained jointly).
    start: Literal["pretrained", "scratch"] = "pretrained"
    # Weight of L_diff in the KGE's loss when joint: its gradient then reaches the embeddings
    # (the reference code); 0 keeps the sampler's training detached from the KGE.
    diffusion_weight: float = num(0.0, NON_NEGATIVE)
    refresh_every: int = num(4, COUNT)
    generate_fraction: float = num(0.0625, between(0, 1, low_open=True))
    faithful: bool = False
    eval_every: int = num(5, COUNT)
    # Per-positive candidates next to the uniform ones in the self-adversarial loss: none,
    # score (the model's own top-scored entities), diffusion (real entities nearest to the
    # generated ones) or generated (the generated embeddings, one per level, prior w_k).
    mined: Literal["none", "score", "diffusion", "generated"] = "none"
    mined_negatives: int = num(8, COUNT)  # per positive and side
    mine_every: int = num(5, COUNT)  # epochs between minings (the first is at the start)
    mine_pool: int = num(0, NON_NEGATIVE)  # score mining against this many random entities


@dataclass
class EvalConfig:
    batch_size: int = num(256, COUNT)
    split: Literal["valid", "test"] = "test"


@dataclass
class ResumeConfig:
    # Where killed training stages keep their resume state (outside every DVC output).
    dir: str = ".resume"
    checkpoint_every: int = num(5, NON_NEGATIVE)  # epochs; 0: only when asked to stop


@dataclass
class LauncherConfig:
    # Processes per machine for the data-parallel stages (pretrain, uniform, retrain), each
    # on its own device; stages/run starts them with torchrun when > 1.
    nproc_per_node: int = num(1, COUNT)


@dataclass
class Params:
    seed: int = num(0, SEED)
    device: str = "auto"
    deterministic: bool = True  # bit-identical reruns (torch deterministic algorithms)
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    kge: KGEConfig = field(default_factory=KGEConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    model: DiffusionConfig = field(default_factory=DiffusionConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    resume: ResumeConfig = field(default_factory=ResumeConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)


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
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        if origin is None:
            return dict(value)
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
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


def parse_section(cls: type, raw: dict, prefix: str = "") -> Any:
    """``raw`` validated into dataclass ``cls`` (keys named under ``prefix``), as every params
    section is: for plug-in option sections (:func:`dhns.samplers.sampler_options`)."""
    return _build(cls, raw, prefix)


#: Keys renamed since results were recorded with them: the old name gets a pointer, not the
#: generic unknown-key error.
RENAMED_KEYS = {"retrain.sampler": "retrain.negatives (2026-12-03: the diffusion model is no "
                                   "longer called a sampler)"}


def _build(cls: type, raw: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        renamed = RENAMED_KEYS.get(f"{where}{unknown[0]}")
        if renamed:
            raise ConfigError(f"{where}{unknown[0]} was renamed {renamed}")
        raise ConfigError(
            f"unknown key {where}{unknown[0]} (known under {prefix or 'top level'}: "
            f"{', '.join(sorted(names))})"
        )
    kwargs = {}
    for f in dataclasses.fields(cls):  # schema order: the first bad key is always the same
        if f.name not in raw:
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        kwargs[f.name] = _check_range(_coerce(raw[f.name], hints[f.name], key), f, key)
    return cls(**kwargs)


def _check_range(value: Any, f: dataclasses.Field, key: str) -> Any:
    """Apply the field's declared ``range`` (to each item of a list) and list rules."""
    bounds = f.metadata.get("range")
    if bounds is None:
        return value
    if not isinstance(value, list):
        if not bounds.contains(value):
            raise ConfigError(f"{key}: must be {bounds}, got {value!r}")
        return value
    if not value:
        raise ConfigError(f"{key}: must not be empty")
    for i, item in enumerate(value):
        if not bounds.contains(item):
            raise ConfigError(f"{key}[{i}]: must be {bounds}, got {item!r}")
        if f.metadata.get("increasing") and i and item <= value[i - 1]:
            raise ConfigError(f"{key}[{i}]: must be greater than {key}[{i - 1}] "
                              f"({value[i - 1]!r}), got {item!r}")
    return value


def _check_cross(params: Params) -> None:
    """Rules that tie keys together (each key's own range is checked by :func:`_build`)."""
    m, r = params.model, params.retrain
    if m.beta_start > m.beta_end:
        raise ConfigError(f"model.beta_start: must be <= model.beta_end ({m.beta_end!r}), "
                          f"got {m.beta_start!r}")
    for name in ("level_weights", "level_margins"):
        values = getattr(r, name)
        if len(values) != len(m.levels):
            raise ConfigError(f"retrain.{name}: needs one entry per model.levels entry "
                              f"({len(m.levels)}), got {len(values)}")
    if not any(r.level_weights):  # L_HA is their weighted mean: it divides by the sum
        raise ConfigError("retrain.level_weights: must not all be 0")
    loss = continuation_kge(params).loss
    if params.kge.negative_sampler != "uniform" and "ns" not in (params.kge.loss, loss):
        raise ConfigError(f"kge.negative_sampler: {params.kge.negative_sampler} draws the "
                          f"negatives of kge.loss ns, but pretrain trains with "
                          f"{params.kge.loss} and the continuations with {loss}")
    if r.mined in ("score", "diffusion") and loss != "ns":
        raise ConfigError(f"retrain.mined: {r.mined} puts real candidates in the negative-"
                          f"sampling softmax, so it needs kge.loss: ns, got {loss}")
    if r.mined == "generated" and loss == "kvsall":
        raise ConfigError("retrain.mined: generated needs a softmax (kge.loss ns, 1vsall or "
                          "shared), got kvsall")
    if params.kge.sparse_updates is True and "ns" not in (params.kge.loss, loss) and \
            "shared" not in (params.kge.loss, loss):
        raise ConfigError(f"kge.sparse_updates: the {params.kge.loss} regime's gradient "
                          "reaches every entity at every step, so sparse updates save nothing; "
                          "use false or auto")
    dhns_term = r.negatives == "dhns" and r.lambda_ha > 0
    if r.start == "scratch" and dhns_term and not r.joint:
        raise ConfigError("retrain.start: scratch with DHNS negatives needs retrain.joint true "
                          "(a freshly initialised diffusion model must learn during the run)")
    if r.start == "scratch" and r.mined != "none":
        raise ConfigError(f"retrain.start: scratch cannot mine (retrain.mined {r.mined}): "
                          "mining needs the pretrained diffusion model; set retrain.mined none")
    if r.ha_source == "random" and (r.joint or r.faithful):
        raise ConfigError("retrain.ha_source: random draws real entities in place of the "
                          "generated ones, so retrain.joint and retrain.faithful (which concern "
                          "the diffusion model) must be false")
    if r.diffusion_weight > 0 and not (dhns_term and r.joint):
        raise ConfigError("retrain.diffusion_weight: needs retrain.joint true and DHNS "
                          "negatives (retrain.negatives dhns, lambda_ha > 0)")
    for section, cfg in (("pretrain", params.pretrain), ("retrain", r)):
        if cfg.warmup_epochs >= cfg.epochs:
            raise ConfigError(f"{section}.warmup_epochs: must be < {section}.epochs "
                              f"({cfg.epochs}), got {cfg.warmup_epochs}")


def continuation_kge(params: Params) -> KGEConfig:
    """``params.kge`` as the continuation stages (uniform, retrain) train with: its ``loss``
    replaced by ``retrain.loss`` unless that is ``pretrain``."""
    if params.retrain.loss == "pretrain":
        return params.kge
    return dataclasses.replace(params.kge, loss=params.retrain.loss)


def params_from_dict(raw: dict | None) -> Params:
    """Validate a nested mapping into :class:`Params`; missing keys take their defaults."""
    params = _build(Params, raw or {})
    _check_cross(params)
    return params


def numeric_fields(cls: type = Params, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """Every numeric (or list of numbers) field of the schema, by dotted key."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out += numeric_fields(hint, key)
        elif hint in (int, float) or hint in (list[int], list[float]):
            out.append((key, f))
    return out


def read_yaml(path: Path, kind: str) -> typing.Any:
    """The YAML document in ``path`` (a ``kind`` file: params, recipe); a missing file or bad
    YAML is a one-line :class:`ConfigError` naming ``path``."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {kind} file") from None
    except yaml.YAMLError as exc:
        # PyYAML's message spans lines (a caret under the spot): one line, as every error here
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None


def load_params(path: str | Path = "params.yaml", overrides: typing.Sequence[str] = ()
                ) -> Params:
    """Read and validate a params file, with ``key=value`` ``overrides`` (as ``dvc exp run -S``)
    applied first. Raises :class:`ConfigError` naming the file (and the overrides)."""
    path = Path(path)
    raw = read_yaml(path, "params")
    source = f"{path}" + "".join(f" -S {o}" for o in overrides)
    try:
        raw = raw if isinstance(raw, dict) else {}
        for assignment in overrides:
            set_dotted(raw, *parse_assignment(assignment))
        return params_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


#: The options of a stage command line (``stages/run NAME [OPTIONS]``), as ``dhns NAME`` has.
_PARAMS_FLAGS, _SET_FLAGS = ("--params", "-p"), ("--set", "-S")


def stage_arguments(path: str | Path, overrides: typing.Sequence[str] = ()) -> list[str]:
    """The stage command line options that :func:`load_stage_params` reads back."""
    return ["--params", str(path), *(arg for o in overrides for arg in ("-S", o))]


def load_stage_params(argv: typing.Sequence[str]) -> Params:
    """The params of a stage command line ``[--params FILE] [-S KEY=VALUE]...`` (FILE by
    default ``params.yaml``; a later ``--params`` wins), by :func:`load_params`."""
    path, overrides = "params.yaml", []
    args = iter(argv)
    for arg in args:
        if arg not in _PARAMS_FLAGS + _SET_FLAGS:
            raise ConfigError(f"unexpected stage argument {arg!r} (expected --params FILE or "
                              "-S KEY=VALUE)")
        value = next(args, None)
        if value is None:
            raise ConfigError(f"{arg} needs a value")
        if arg in _PARAMS_FLAGS:
            path = value
        else:
            overrides.append(value)
    return load_params(path, overrides)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", value)``, the value read as YAML (``-S kge.dim=128`` gives
    an int, ``-S 'kge.modalities=[structure,text]'`` a list), as ``dvc exp run -S`` does."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"-S {text!r}: expected key=value")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"-S {text!r}: the value is not valid YAML ({exc})") from None


def set_dotted(raw: dict, key: str, value: Any) -> None:
    """Set ``raw["a"]["b"] = value`` for ``key`` ``"a.b"``, creating sections as needed."""
    *path, last = key.split(".")
    node = raw
    for part in path:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is not a section")
        node = child
    node[last] = value


def dotted(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A nested params mapping as ``{"a.b": value}`` overrides (``dvc exp run -S`` keys): the
    inverse of :func:`set_dotted`. Only mappings nest; a list is one value."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(dotted(value, f"{name}."))
        else:
            out[name] = value
    return out


def format_assignment(key: str, value: Any) -> str:
    """``("a.b", value)`` -> ``"a.b=value"``, the inverse of :func:`parse_assignment`: the value
    as one line of YAML flow style, lists without spaces (``kge.modalities=[structure,text]``),
    as ``dvc exp run -S`` takes it. Raises :class:`ConfigError` for what does not read back
    equal in one line (a key holding ``=``, a string with a line break)."""
    text = f"{key}={_flow(value)}"
    try:
        same = "\n" not in text and parse_assignment(text) == (key, value)
    except ConfigError:
        same = False
    if not same:
        raise ConfigError(f"{key}: {value!r} cannot be written as one -S {key}=VALUE override")
    return text


def _flow(value: Any) -> str:
    if isinstance(value, list):
        flow = "[" + ",".join(_flow(v) for v in value) + "]"
        try:
            if yaml.safe_load(flow) == value:
                return flow
        except yaml.YAMLError:
            pass
        # An item that is plain in block style but not inside [...] (a comma, a bracket):
        # JSON's quoted strings are flow YAML too.
        return json.dumps(value, separators=(",", ":"))
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf)
    return text.removesuffix("\n...\n").removesuffix("\n")  # the document end of a scalar


def to_dict(params: Any) -> dict:
    """Plain nested dict of a params dataclass (for checkpoints and reports)."""
    return dataclasses.asdict(params)
