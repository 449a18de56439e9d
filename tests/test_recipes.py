"""The benchmark recipes (``recipes/*.yaml``), ``bench/recipe.py`` and ``bench/row.sh``'s use of
them. Nothing here trains: ``bench/row.sh`` runs only in a scratch copy whose ``dvc`` and
``dhns`` are stubs, and the real one only with arguments it rejects before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import recipe
from dhns.config import (
    ConfigError,
    dotted,
    format_assignment,
    load_params,
    parse_assignment,
    set_dotted,
    to_dict,
)

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))

#: bench/row.sh's recipe before recipes/ existed, as it was written there (after
#: `-S data.name=$ds -S seed=$seed`): the committed DB15K, MKG-W and MKG-Y rows ran with it.
ROW_SH_RECIPE = [
    "kge.dim=250", "kge.modalities=[structure,text]", "model.modalities=[structure,text]",
    "pretrain.epochs=300", "pretrain.eval_every=10", "pretrain.patience=3",
    "pretrain.batch_size=1024", "pretrain.lr=0.001", "pretrain.max_valid=2000",
    "model.epochs=15",
    "retrain.epochs=30", "retrain.batch_size=1024", "retrain.lr=0.0002", "retrain.eval_every=5",
    "retrain.generate_fraction=0.0625", "retrain.refresh_every=4",
]


def _replace(overrides: list[str], **values: str) -> list[str]:
    return [f"{k}={values[k]}" if (k := o.partition("=")[0]) in values else o for o in overrides]


def test_the_four_recipes_ship() -> None:
    assert [p.stem for p in RECIPES] == ["DB15K", "MKG-W", "MKG-Y", "default"]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_and_applies_over_params_yaml(path: Path) -> None:
    overrides = recipe.recipe_overrides(path)
    assert overrides and all("\n" not in o for o in overrides)
    # What bench/row.sh passes: data.name and seed first, the recipe, then extra overrides.
    params = to_dict(load_params(ROOT / "params.yaml",
                                 ["data.name=MKG-Y", "seed=1", *overrides]))
    for key, value in dotted(recipe.load_recipe(path)).items():
        node = params
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    assert params["data"]["name"] == "MKG-Y" and params["seed"] == 1


@pytest.mark.parametrize("name", ["MKG-Y", "MKG-W", "default"])
def test_recipe_is_the_one_row_sh_hard_coded(name: str) -> None:
    flat = recipe.recipe_overrides(ROOT / "recipes" / f"{name}.yaml")
    # The same strings as the old -S arguments; -S keys are distinct, so order is not params.
    assert sorted(flat) == sorted(ROW_SH_RECIPE) and len(set(flat)) == len(flat)


def test_db15k_recipe_is_the_old_recipe_with_its_rows_model_epochs() -> None:
    flat = recipe.recipe_overrides(ROOT / "recipes" / "DB15K.yaml")
    # The committed DB15K rows ran `bench/row.sh DB15K SEED -S model.epochs=4`.
    assert sorted(flat) == sorted(_replace(ROW_SH_RECIPE, **{"model.epochs": "4"}))


@pytest.mark.parametrize("dataset", ["DB15K", "MKG-W", "MKG-Y"])
def test_recipe_matches_the_params_its_committed_rows_recorded(dataset: str) -> None:
    rows = sorted((ROOT / "results").glob(f"{dataset}-seed[0-9].json"))
    assert len(rows) == 3
    wanted = dotted(recipe.load_recipe(ROOT / "recipes" / f"{dataset}.yaml"))
    for row in rows:
        recorded = dotted(json.loads(row.read_text())["params"])
        assert {k: recorded[k] for k in wanted} == wanted, row.name


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = recipe.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("text", "reason"), [
    ("kge:\n  dimm: 3\n", "unknown key kge.dimm (known under kge: "),
    ("pretrain:\n  lr: -1\n", "pretrain.lr: must be > 0, got -1"),
    ("kge:\n  dim: many\n", "kge.dim: expected an integer, got 'many'"),
    ("data:\n  name: MKG-Y\n", "data.name: set by bench/row.sh from its arguments"),
    ("seed: 3\n", "seed: set by bench/row.sh from its arguments"),
    ("kge.dim: 250\n", "unknown key kge.dim (known under top level: "),
    ("retrain:\n  sampler: uniform\n", "retrain.sampler was renamed retrain.negatives "),
    ("- kge\n", "expected a mapping of params sections, got list"),
    ("kge: [\n", "not valid YAML: "),
])
def test_a_bad_recipe_is_one_line_and_status_2(tmp_path: Path, text: str, reason: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "X.yaml"
    path.write_text(text)
    code, out, err = _main([str(path)], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"{path}: {reason}") and err.count("\n") == 1, err


def test_the_module_exits_2_on_a_typo(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("retrain:\n  epoch: 30\n")
    done = subprocess.run([sys.executable, "-m", "bench.recipe", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"{path}: unknown key retrain.epoch ")


def test_overrides_print_one_per_line_in_file_order(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("kge:\n  modalities: [structure, text]\n  sampler_options: {sans: {hops: 3}}\n"
                    "features:\n  text: {template: '{name}; {relations}'}\n"
                    "retrain: {lambda_ha: 1.0e-05}\n")
    assert _main([str(path)], capsys) == (0, "-S kge.modalities=[structure,text]\n"
                                             "-S kge.sampler_options.sans.hops=3\n"
                                             "-S features.text.template='{name}; {relations}'\n"
                                             "-S retrain.lambda_ha=1.0e-05\n", "")
    path.write_text("# only comments: params.yaml as it is\n")
    assert _main([str(path)], capsys) == (0, "", "")


@pytest.mark.parametrize("value", [250, 0.0002, 1e-5, 0.0625, True, None, "structure",
                                   "{name}; {relations}", "yes", "1e-06", "",
                                   ["structure", "text"], [0.05, 0.1, 0.2, 0.5], ["a,b", "]"],
                                   []])
def test_format_assignment_reads_back_through_parse_assignment(value: object) -> None:
    text = format_assignment("a.b", value)
    assert parse_assignment(text) == ("a.b", value) and "\n" not in text


def test_format_assignment_refuses_what_one_line_cannot_hold() -> None:
    assert format_assignment("kge.modalities", ["structure", "text"]) == \
        "kge.modalities=[structure,text]"
    with pytest.raises(ConfigError, match="cannot be written as one -S"):
        format_assignment("features.text.template", "{name}\n{description}")
    with pytest.raises(ConfigError, match="cannot be written as one -S"):
        format_assignment("a=b", 1)


def test_dotted_is_set_dotted_inverted() -> None:
    tree = {"kge": {"dim": 8, "sampler_options": {"sans": {"hops": 2}}}, "seed": 1,
            "model": {"levels": [0.1, 0.5]}}
    flat = dotted(tree)
    assert flat == {"kge.dim": 8, "kge.sampler_options.sans.hops": 2, "seed": 1,
                    "model.levels": [0.1, 0.5]}
    rebuilt: dict = {}
    for key, value in flat.items():
        set_dotted(rebuilt, key, value)
    assert rebuilt == tree


def test_select_recipe_dataset_file_then_default_then_recipe(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    default = tmp_path / "recipes" / "default.yaml"
    default.write_text("kge: {dim: 250}\n")
    own = tmp_path / "recipes" / "MKG-Y.yaml"
    own.write_text("kge: {dim: 100}\n")
    assert recipe.select_recipe("MKG-Y", tmp_path) == own
    assert recipe.select_recipe("my-graph", tmp_path) == default  # any data/ folder
    other = tmp_path / "elsewhere.yaml"
    other.write_text("")
    assert recipe.select_recipe("MKG-Y", tmp_path, recipe=str(other)) == other  # $RECIPE wins
    with pytest.raises(ConfigError, match=r"RECIPE=.*nope\.yaml: no such recipe file"):
        recipe.select_recipe("MKG-Y", tmp_path, recipe=str(tmp_path / "nope.yaml"))
    default.unlink()
    with pytest.raises(ConfigError, match="default.yaml: no such recipe file"):
        recipe.select_recipe("my-graph", tmp_path)


def test_which_reads_recipe_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RECIPE", raising=False)
    assert _main(["--which", "MKG-Y"], capsys) == (0, "recipes/MKG-Y.yaml\n", "")
    assert _main(["--which", "FB15k-237"], capsys) == (0, "recipes/default.yaml\n", "")
    # Inside the repository: shown repository-relative (row.sh records it in the command).
    monkeypatch.setenv("RECIPE", str(ROOT / "recipes" / "DB15K.yaml"))
    assert _main(["--which", "MKG-Y"], capsys) == (0, "recipes/DB15K.yaml\n", "")
    outside = tmp_path / "mine.yaml"
    outside.write_text("kge: {dim: 32}\n")
    monkeypatch.setenv("RECIPE", str(outside))
    assert _main(["--which", "MKG-Y"], capsys) == (0, f"{outside.resolve()}\n", "")
    monkeypatch.setenv("RECIPE", str(tmp_path / "missing.yaml"))
    code, out, err = _main(["--which", "MKG-Y"], capsys)
    assert code == 2 and out == "" and "missing.yaml: no such recipe file" in err


# bench/row.sh itself --------------------------------------------------------------------------

STUB = """#!/usr/bin/env bash
if [ "$1" = status ]; then  # dvc status: recorded apart, answers $DVC_STATUS (0 = up to date)
  printf '%s\\n' "$@" > "$(dirname "$0")/../../{name}.status.args"
  exit "${{DVC_STATUS:-0}}"
fi
printf '%s\\n' "$@" > "$(dirname "$0")/../../{name}.args"
exit {code}
"""


def _sandbox(tmp_path: Path, dvc_code: int) -> Path:
    """A scratch copy holding only what bench/row.sh reads, with stub ``dvc`` and ``dhns`` (they
    record their arguments and exit): whatever row.sh is asked, nothing can train here."""
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    for name in ("row.sh", "__init__.py", "recipe.py", "collect.py", "summary.py"):
        (repo / "bench" / name).write_bytes((ROOT / "bench" / name).read_bytes())
    (repo / "recipes").mkdir()
    for path in RECIPES:
        (repo / "recipes" / path.name).write_bytes(path.read_bytes())
    (repo / "dhns").symlink_to(ROOT / "dhns")
    (repo / "params.yaml").write_text("seed: 0\n")
    (repo / "metrics").mkdir()  # what bench.collect tabulates after the run
    scores = {"mrr": 0.3, "hits@1": 0.2, "hits@3": 0.3, "hits@10": 0.4, "optimistic": {"mrr": 0.3}}
    (repo / "metrics" / "evaluate.json").write_text(
        json.dumps({m: scores for m in ("pretrain", "uniform", "dhns")}))
    (repo / "data" / "MKG-Y").mkdir(parents=True)  # no import: the dataset is there
    bin_ = repo / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (repo / ".venv" / ".installed").touch()
    tools = {"python": f'#!/usr/bin/env bash\nexec "{sys.executable}" "$@"\n',
             "dvc": STUB.format(name="dvc", code=dvc_code),
             "dhns": STUB.format(name="dhns", code=5)}
    for name, text in tools.items():
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    return repo


def _row(repo: Path, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(repo.parent), "LANG": "C.UTF-8", **env}
    return subprocess.run(["bash", str(repo / "bench" / "row.sh"), *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=300)


def test_row_sh_runs_dvc_with_the_recipe_then_the_extra_overrides(tmp_path: Path) -> None:
    repo = _sandbox(tmp_path, dvc_code=3)
    done = _row(repo, ["MKG-Y", "0", "-S", "retrain.lambda_ha=0.1"], cwd=tmp_path)
    assert done.returncode == 3, done.stderr  # the stub dvc's status: set -e stops there
    args = (repo / "dvc.args").read_text().splitlines()
    recipe_args = [a for o in recipe.recipe_overrides(ROOT / "recipes" / "MKG-Y.yaml")
                   for a in ("-S", o)]
    assert args == ["exp", "run", "-S", "data.name=MKG-Y", "-S", "seed=0", *recipe_args,
                    "-S", "retrain.lambda_ha=0.1"]
    assert "bench/row.sh: recipe recipes/MKG-Y.yaml" in done.stderr
    assert not (repo / "dhns.args").exists()


def test_row_sh_records_a_relative_recipe_repository_relative(tmp_path: Path) -> None:
    repo = _sandbox(tmp_path, dvc_code=0)
    # Named from the caller's folder (bench/), as a user types it; the row records it from the
    # repository root, the way bench/row.sh is run.
    done = _row(repo, ["MKG-Y", "2"], cwd=repo / "bench", RECIPE="../recipes/DB15K.yaml")
    assert done.returncode == 0, done.stderr
    assert "-S\nmodel.epochs=4\n" in (repo / "dvc.args").read_text()
    row = json.loads((repo / "results" / "MKG-Y-seed2.json").read_text())
    assert row["command"] == "RECIPE=recipes/DB15K.yaml bench/row.sh MKG-Y 2 "


def test_row_sh_writes_a_row_only_where_dvc_says_evaluate_is_up_to_date(tmp_path: Path) -> None:
    # `bench/row.sh MKG-W 0 diffusion` builds a base for bench.arm: evaluate does not run, so
    # the committed metrics/evaluate.json (another run's) must not become an MKG-W row.
    # Whether evaluate ran is DVC's answer, not a guess from the arguments: `-n NAME` takes a
    # value that is not a stage.
    repo = _sandbox(tmp_path, dvc_code=0)
    done = _row(repo, ["MKG-Y", "0", "-S", "retrain.lambda_ha=0.1", "diffusion"], cwd=tmp_path,
                DVC_STATUS="1")
    assert done.returncode == 0, done.stderr
    assert (repo / "dvc.args").read_text().splitlines()[-3:] == [
        "-S", "retrain.lambda_ha=0.1", "diffusion"]
    assert (repo / "dvc.status.args").read_text().splitlines() == ["status", "--quiet",
                                                                   "evaluate"]
    assert "evaluate is not up to date" in done.stderr
    assert not (repo / "results").exists()
    done = _row(repo, ["MKG-Y", "0", "-n", "my-run"], cwd=tmp_path, DVC_STATUS="0")
    assert done.returncode == 0, done.stderr
    assert json.loads((repo / "results" / "MKG-Y-seed0.json").read_text())["command"] == (
        "bench/row.sh MKG-Y 0 -n my-run")


def test_row_sh_stops_on_a_bad_recipe_before_any_work(tmp_path: Path) -> None:
    repo = _sandbox(tmp_path, dvc_code=0)
    (tmp_path / "bad.yaml").write_text("pretrain:\n  epoch: 300\n")
    (repo / "data" / "MKG-Y").rmdir()  # a data import would be the first work
    done = _row(repo, ["MKG-Y", "0"], cwd=tmp_path, RECIPE="bad.yaml")
    assert done.returncode == 2
    assert done.stderr.startswith(f"{tmp_path / 'bad.yaml'}: unknown key pretrain.epoch ")
    assert done.stderr.count("\n") == 1  # the one line, nothing after it
    assert not (repo / "dvc.args").exists() and not (repo / "dhns.args").exists()
    done = _row(repo, ["MKG-Y", "0"], cwd=tmp_path, RECIPE="missing.yaml")
    assert done.returncode == 2 and "missing.yaml: no such recipe file" in done.stderr


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(),
                    reason="bench/row.sh would run make install first")
def test_the_real_row_sh_rejects_a_bad_recipe(tmp_path: Path) -> None:
    # The repository's own row.sh, with arguments it refuses before the data import and the
    # run: a recipe with a typo, and a dataset name that no import or download could serve.
    bad = tmp_path / "bad.yaml"
    bad.write_text("kge:\n  dimm: 250\n")
    env = {**os.environ, "RECIPE": str(bad), "DHNS_SHARED": str(tmp_path / "none")}
    done = subprocess.run(["bash", str(ROOT / "bench" / "row.sh"), "no-such-dataset", "0"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith(f"{bad}: unknown key kge.dimm ")
    assert not (ROOT / "data" / "no-such-dataset").exists()


def test_row_sh_prints_its_usage_with_too_few_arguments() -> None:
    done = subprocess.run(["bash", str(ROOT / "bench" / "row.sh"), "MKG-Y"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "bench/row.sh DATASET SEED" in done.stdout and "recipes/DATASET.yaml" in done.stdout


def test_recipe_yaml_files_are_plain_params_fragments() -> None:
    for path in RECIPES:
        text = path.read_text()
        assert text.startswith("# Benchmark recipe"), path.name
        assert "bench/row.sh" in text and "Search" in text, path.name
        assert set(yaml.safe_load(text)) <= {"kge", "pretrain", "model", "retrain"}, path.name
