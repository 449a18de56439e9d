"""The README's command lines, run exactly as written, from a shell whose PATH lacks the venv.

They run in a scratch git repository holding a copy of the project (tiny synthetic params) and
a ``.venv`` link to this environment, the way a user's fresh clone looks after ``make``. Every
command line in the README's bash blocks is either run here or listed in ``NOT_RUN_HERE`` with
the reason, so a new README command fails this test until it is exercised or accounted for.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_project import PIPELINE_TINY, merge

from dhns.config import SyntheticConfig
from dhns.data import generate_synthetic

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
PROJECT_FILES = ("dhns", "stages", "dvc.yaml", "Makefile", "requirements.lock", "pyproject.toml",
                 ".gitignore", ".dvcignore")
# In the order the README gives them; each depends on the ones before.
RUN_HERE = [
    "make run",
    ".venv/bin/dvc exp run -S model.steps=1000",
    ".venv/bin/dvc metrics diff",
    ".venv/bin/dhns data import DB15K --from ~/datasets/DB15K",
    ".venv/bin/dvc exp run -S data.name=DB15K",
]
NOT_RUN_HERE = {
    "make test": "the test command itself: CI runs it (.ci/run)",
    ".venv/bin/dhns data download MKG-W": "needs the internet; tests/test_registry.py runs "
                                          "the download against a local server",
    "bench/row.sh MKG-Y 0": "a benchmark row: a fresh clone and hours of training",
    "ROW_TAG=lambda1 bench/row.sh MKG-Y 0 -S retrain.lambda_ha=1.0": "a benchmark row",
    ".venv/bin/python -m bench.summary": "run against the repository's results below",
}


def readme_commands() -> list[str]:
    """Command lines of the README's ```bash blocks: comments dropped, continuations joined."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def test_every_readme_command_is_accounted_for() -> None:
    commands = readme_commands()
    unknown = [c for c in commands if c not in RUN_HERE and c not in NOT_RUN_HERE]
    assert not unknown, f"README commands neither run nor excused by this test: {unknown}"
    assert [c for c in commands if c in RUN_HERE] == RUN_HERE, "README order changed"




def _shell(command: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """``command`` in bash as a user types it: PATH without the venv, no PYTHONPATH."""
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not (VENV / "bin" / "dvc").exists() or shutil.which("git") is None:
        pytest.skip("needs dvc in this environment and git")
    stamp = VENV / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < (ROOT / "requirements.lock").stat().st_mtime:
        # `make run` in the copy would reinstall into this venv, and `pip install -e` there
        # would point this checkout's `dhns` at the temporary copy.
        pytest.skip("the venv is older than requirements.lock: run `make install` first")
    work = tmp_path_factory.mktemp("readme") / "project"
    work.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, work / name)  # copy2: make's stamp stays newer than the lock
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), PIPELINE_TINY)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    (work / ".venv").symlink_to(VENV)
    home = work.parent / "home"
    generate_synthetic(SyntheticConfig(num_entities=50, num_types=3, num_relations=3,
                                       triples_per_relation=50, image_size=8),
                       home / "datasets" / "DB15K")
    for command in ("git init -q", "git config user.email t@t", "git config user.name t",
                    "echo .venv >> .git/info/exclude", ".venv/bin/dvc init -q",
                    "git add -A", "git commit -qm init"):
        done = _shell(command, work, home)
        assert done.returncode == 0, done.stderr
    return work, home


def test_readme_commands_run_as_written(checkout: tuple[Path, Path]) -> None:
    work, home = checkout
    for command in RUN_HERE:
        done = _shell(command, work, home)
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
        if command == "make run":
            assert "dhns" in done.stdout and "MRR" in done.stdout, done.stdout
    # The two experiments really ran with their overrides.
    exps = _shell(".venv/bin/dvc exp show --json", work, home)
    assert exps.returncode == 0, exps.stderr
    assert '"steps": 1000' in exps.stdout.replace(": 1000,", ": 1000")
    assert json.loads((work / "reports" / "prepare.json").read_text())["name"] == "DB15K"


def test_bench_summary_as_written() -> None:
    done = _shell(".venv/bin/python -m bench.summary", ROOT, Path.home())
    if not (ROOT / ".venv").exists():
        pytest.skip("no .venv in this checkout")
    assert done.returncode == 0, done.stderr
    assert "MRR" in done.stdout or "mrr" in done.stdout
