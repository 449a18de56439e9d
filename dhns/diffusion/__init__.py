"""DiffHEG: conditional diffusion over entity embeddings (docs/method.md, section 3).

Tensor-level and KGE-agnostic: :class:`DiffusionModel` trains on (x0, c, modality) batches and
generates hardness-level states ``x_{t_k}`` from conditions.
"""

from dhns.diffusion.denoiser import Denoiser, sinusoidal_embedding
from dhns.diffusion.model import L1_OF_ZERO_PREDICTOR, DiffusionModel, level_steps
from dhns.diffusion.schedule import NoiseSchedule, make_betas

__all__ = [
    "L1_OF_ZERO_PREDICTOR",
    "Denoiser",
    "DiffusionModel",
    "NoiseSchedule",
    "level_steps",
    "make_betas",
    "sinusoidal_embedding",
]
