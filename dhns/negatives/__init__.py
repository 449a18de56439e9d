"""DHNS negatives: diffusion training pairs from a KGE, hierarchical generation, NTAT loss."""

from dhns.negatives.hierarchical import GeneratedNegatives, HierarchicalLevels, RandomLevels
from dhns.negatives.ntat import NTATLoss, fuse_generated, hardness_aware_loss
from dhns.negatives.pairs import DIRECTIONS, diffusion_pairs, diffusion_streams

__all__ = [
    "DIRECTIONS",
    "GeneratedNegatives",
    "HierarchicalLevels",
    "NTATLoss",
    "RandomLevels",
    "diffusion_pairs",
    "fuse_generated",
    "hardness_aware_loss",
    "diffusion_streams",
]
