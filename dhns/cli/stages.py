"""The pipeline-stage commands, one per stage of ``dvc.yaml``: ``dhns prepare``, ``dhns
pretrain``, ...

Each runs its stage's ``dvc.yaml`` command (``stages/run NAME [ARGS]``) in the project folder
as a subprocess, as ``dvc repro`` does, with the params file and the ``-S`` overrides passed
on, and exits with its status; the library never imports the pipeline layer. DVC remains the
way to run the whole pipeline (``make run`` / ``dvc repro``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import typer

from dhns.cli.common import OverridesOption, ParamsOption, app, report_user_errors
from dhns.errors import UserError
from dhns.project import project_root


def run_stage(stage: str, params: Path, overrides: Sequence[str] = ()) -> Path:
    """Run the ``dvc.yaml`` stage ``stage`` in the project folder; return that folder.

    Bad params are reported here, before anything starts. A stage that fails exits this
    process with its status (its ``error:`` line already printed): 1 for a user's error,
    130 when stopped.
    """
    from dhns.config import load_params, stage_arguments
    from dhns.runs import stage_commands, start_stage

    load_params(params, overrides)  # bad params are reported wherever the command runs
    root = project_root()
    argv = dict(stage_commands(root)).get(stage)
    if argv is None:
        raise UserError(f"{root / 'dvc.yaml'}: no stage {stage}")
    if not (root / "stages" / f"{argv[0]}.py").is_file():
        raise FileNotFoundError(f"stage module stages/{argv[0]}.py is not available in this "
                                "checkout")
    sys.stdout.flush()
    sys.stderr.flush()
    status = wait_in_foreground(start_stage(root, [*argv, *stage_arguments(params, overrides)],
                                            root))
    if status != 0:
        raise typer.Exit(status)
    return root


def wait_in_foreground(process: subprocess.Popen) -> int:
    """Wait for ``process``; its exit status as a shell gives it (128 + N if signal N killed it).

    Ctrl-C reaches the child from the terminal, and the child decides how to stop (training
    saves its resume state and exits 130), so this process ignores SIGINT meanwhile, as
    ``dvc repro`` does; a SIGTERM sent to this process alone is passed on.
    """
    if threading.current_thread() is not threading.main_thread():  # signals: main thread only
        return _shell_status(process.wait())
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
                signal.SIGTERM: signal.signal(signal.SIGTERM,
                                              lambda signum, _: process.send_signal(signum))}
    try:
        return _shell_status(process.wait())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _shell_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _add_stage(name: str, help_text: str) -> None:
    @report_user_errors
    def command(params: ParamsOption = Path("params.yaml"),
                overrides: OverridesOption = None) -> None:
        run_stage(name.replace("-", "_"), params, overrides or ())

    command.__name__ = name.replace("-", "_")
    command.__doc__ = help_text
    app.command(name, help=help_text)(command)


_add_stage("synthetic",
           "Generate the embedded synthetic dataset. Reads data.synthetic and data.dir; "
           "writes <data.dir>/synthetic.")
_add_stage("prepare",
           "Load and validate the dataset <data.dir>/<data.name> (cleaning valid if "
           "data.clean_valid). Writes artifacts/prepared and {metrics,reports}/prepare.json.")
_add_stage("text-features",
           "Extract text features of the prepared entities (features.text). Reads "
           "artifacts/prepared; writes artifacts/features/text.pt and "
           "{metrics,reports}/text_features.json.")
_add_stage("image-features",
           "Extract image features of the prepared entities (features.image). Reads "
           "artifacts/prepared; writes artifacts/features/image.pt and "
           "{metrics,reports}/image_features.json.")
_add_stage("pretrain",
           "Pretrain the multimodal KGE in the kge.loss regime (kge, pretrain). Reads "
           "artifacts/prepared and artifacts/features; writes artifacts/pretrain/model.pt, "
           "{metrics,reports}/pretrain.json and plots/pretrain.csv.")
_add_stage("diffusion",
           "Train the diffusion model of hard negatives on the pretrained embeddings (model). "
           "Reads "
           "artifacts/prepared and artifacts/pretrain/model.pt; writes "
           "artifacts/diffusion/model.pt, {metrics,reports}/diffusion.json and "
           "plots/diffusion*.csv.")
_add_stage("uniform",
           "Equal-budget baseline: continue the pretrained KGE with ordinary negatives only "
           "(retrain.epochs). Writes artifacts/uniform/model.pt, {metrics,reports}/uniform.json "
           "and plots/uniform.csv.")
_add_stage("retrain",
           "Continue the pretrained KGE with DHNS hierarchical negatives from the diffusion "
           "model (retrain). Reads artifacts/pretrain/model.pt and "
           "artifacts/diffusion/model.pt; writes artifacts/retrain/model.pt, "
           "{metrics,reports}/retrain.json, plots/retrain.csv and dvclive/retrain.")
_add_stage("figures",
           "Draw the run's PNG figures (training curves, score distributions, a PCA of the "
           "generated negatives among the real entities) from plots/*.csv and "
           "metrics/pretrain.json; writes plots/figures/*.png.")
