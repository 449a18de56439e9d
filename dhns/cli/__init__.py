"""The ``dhns`` command line: pipeline stages, dataset management, evaluation and prediction.

One module per command group, each registering its commands on :data:`app` (``common``) when
imported: ``stages`` (one command per ``dvc.yaml`` stage, run as ``dvc repro`` runs it),
``tune``, ``evaluate``, ``results`` (also ``samplers`` and ``exps``), ``predict`` (and
``serve``), ``negatives`` and ``data``. Heavy modules (torch, the model code) are imported
inside the commands so ``dhns --help`` stays fast.
"""

from __future__ import annotations

from dhns.cli.common import app

# The commands register as their modules are imported: this order is that of `dhns --help`.
# isort: off
from dhns.cli import stages, tune, evaluate, results, predict, negatives, data  # noqa: F401
# isort: on

__all__ = ["app"]
