"""Negative samplers: one interface (:class:`NegativeSampler`), one registry.

Importing this package registers the built-in samplers.
"""

from dhns.samplers import corruption, kbgan, mans, mmrns, nscaching, sans  # noqa: F401 (they register)
from dhns.samplers.base import NegativeSampler, NoOptions, SamplerContext
from dhns.samplers.registry import (
    build_sampler,
    known_samplers,
    register,
    sampler_class,
    sampler_options,
)

__all__ = ["NegativeSampler", "NoOptions", "SamplerContext", "build_sampler", "known_samplers",
           "register", "sampler_class", "sampler_options"]
