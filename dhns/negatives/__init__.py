"""DHNS negatives: diffusion training pairs from a KGE, hierarchical generation, NTAT loss."""

from dhns.negatives.hierarchical import GeneratedNegatives, HierarchicalGenerator
from dhns.negatives.ntat import NTATLoss, fuse_generated, hardness_aware_loss
from dhns.negatives.pairs import DIRECTIONS, diffusion_pairs, sampler_modalities

__all__ = [
    "DIRECTIONS",
    "GeneratedNegatives",
    "HierarchicalGenerator",
    "NTATLoss",
    "diffusion_pairs",
    "fuse_generated",
    "hardness_aware_loss",
    "sampler_modalities",
]
