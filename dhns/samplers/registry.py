"""The one registry of negative samplers (``kge.negative_sampler``)."""

from __future__ import annotations

from typing import Any

from dhns.config import ConfigError, KGEConfig, parse_section
from dhns.samplers.base import NegativeSampler, SamplerContext

_SAMPLERS: dict[str, type[NegativeSampler]] = {}


def register(cls: type[NegativeSampler]) -> type[NegativeSampler]:
    """Class decorator: make ``cls`` available as ``kge.negative_sampler: <cls.name>``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a negative sampler needs a name")
    existing = _SAMPLERS.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"negative sampler {cls.name!r} is already registered "
                         f"({existing.__module__}.{existing.__qualname__})")
    _SAMPLERS[cls.name] = cls
    return cls


def known_samplers() -> list[str]:
    """Registered names, in registration order."""
    return list(_SAMPLERS)


def sampler_class(name: str) -> type[NegativeSampler]:
    """The class registered as ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return _SAMPLERS[name]
    except KeyError:
        raise KeyError(f"unknown negative sampler {name!r} (known: "
                       f"{', '.join(known_samplers())})") from None


def build_sampler(name: str, context: SamplerContext, num_negatives: int,
                  options: Any = None, chunk_size: int = 64) -> NegativeSampler:
    """An instance of the sampler ``name`` (``options``: its ``Options``, default when None)."""
    return sampler_class(name)(context, num_negatives, options, chunk_size)


def sampler_options(kge: KGEConfig, name: str | None = None) -> Any:
    """The validated ``Options`` of sampler ``name`` (default: ``kge.negative_sampler``).

    Checks the whole of ``kge.negative_sampler`` and ``kge.sampler_options`` first: every
    name must be registered and every options mapping valid for its sampler, else
    :class:`~dhns.config.ConfigError` naming the key (and the known samplers).
    """
    for key, sampler in [("kge.negative_sampler", kge.negative_sampler),
                         *((f"kge.sampler_options.{n}", n) for n in kge.sampler_options)]:
        if sampler not in _SAMPLERS:
            raise ConfigError(f"{key}: unknown negative sampler {sampler!r} (known: "
                              f"{', '.join(known_samplers())})")
    parsed = {n: parse_section(_SAMPLERS[n].Options, raw, f"kge.sampler_options.{n}")
              for n, raw in kge.sampler_options.items()}
    name = name or kge.negative_sampler
    return parsed[name] if name in parsed else sampler_class(name).Options()
