"""dvc.yaml declares, for every stage, each project file the stage's code can import.

A file left out of ``deps`` is a silent cache bug: an edit there leaves ``dvc status`` up to
date and the stage's outputs stale. The imports are derived statically (every ``import``
statement in a module, at any depth, so lazy imports count too), followed transitively through
``dhns`` and ``stages``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("dhns", "stages")


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from pkg import name` may import the submodule pkg.name
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in PROJECT_PACKAGES}


def import_closure(module: str) -> set[str]:
    """Repository-relative paths of every project file that importing ``module`` can load,
    package ``__init__`` files included."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        parts = todo.pop().split(".")
        for depth in range(1, len(parts) + 1):
            path = _module_file(".".join(parts[:depth]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_imported_modules(path))
    return {p.relative_to(ROOT).as_posix() for p in seen}


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _stage_module(cmd: str) -> str:
    words = cmd.split()
    assert words[0] == "stages/run", f"unexpected stage command {cmd!r}"
    return f"stages.{words[1]}"


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_every_imported_file_is_a_dependency(stage: str) -> None:
    spec = _stages()[stage]
    deps = list(spec.get("deps", []))
    missing = sorted(p for p in import_closure(_stage_module(spec["cmd"]))
                     if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage} imports files not in its deps: {missing}"
    assert "stages/run" in deps, f"stage {stage}: its launcher stages/run is not a dep"


def test_closure_follows_lazy_and_from_imports() -> None:
    closure = import_closure("stages.diffusion")
    # stages.common is reached by `from stages.common import ...`, checkpoint's sampler import
    # is inside a function, and every package __init__ on the way is loaded too.
    assert {"stages/common.py", "dhns/training/checkpoint.py", "dhns/diffusion/model.py",
            "dhns/__init__.py", "stages/__init__.py"} <= closure


def test_the_library_never_imports_the_pipeline_layer() -> None:
    """``dhns`` (its CLI included) runs stages as ``stages/run`` processes, never imports them:
    no import of ``stages``, nor a ``sys.path`` edit to import them by name."""
    for path in sorted((ROOT / "dhns").rglob("*.py")):
        stages = sorted(n for n in _imported_modules(path) if n.split(".")[0] == "stages")
        assert not stages, f"{path.relative_to(ROOT)} imports {stages}"
        assert "sys.path" not in path.read_text(), f"{path.relative_to(ROOT)} edits sys.path"
