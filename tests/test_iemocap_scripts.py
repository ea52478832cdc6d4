"""run_loso.sh and aggregate.py, and the embedded-default demo, run for real.

run_loso.sh runs with PYTHON set to a stub interpreter (written by the test)
that records each train.py call and writes the run folder a real run writes
there, and runs everything else (aggregate.py) on the real interpreter: the
script's own logic (folds, seeds, arguments, the final table) is tested
without training 20 models; real training is tested in test_iemocap_recipe.
"""

import json
import os
import statistics
import sys

import pytest
from conftest import FAST_TRAINING, RECIPES, ROOT, load_recipe_script, run_script

RECIPE = RECIPES / "IEMOCAP"
HPARAMS = RECIPE / "hparams" / "train_wavlm_large.yaml"

STUB = """#!{python}
import json
import os
import sys
from pathlib import Path

CONFIG = json.loads(Path({config!r}).read_text())
args = sys.argv[1:]
if not args or Path(args[0]).name != "train.py":
    os.execv(CONFIG["python"], [CONFIG["python"], *args])  # aggregate.py
with open(CONFIG["calls"], "a") as calls:
    calls.write(json.dumps(args) + "\\n")
options = dict(a[2:].partition("=")[::2] for a in args[2:] if a.startswith("--"))
mode, seed = options["split_mode"], int(options["seed"])
fold = options.get("test_speaker") if mode == "lospk" else "session"
if mode == "loso":
    fold += options["test_session"]
# Where the recipe writes: output_folder in hparams/train_wavlm_large.yaml.
out = Path("results/IEMOCAP", options["experiment_name"], mode, f"seed_{{seed}}", fold)
out.mkdir(parents=True)
score = CONFIG["scores"][mode][f"{{seed}}/{{fold}}"]
metrics = dict(CONFIG["template"])
metrics.update(
    experiment=options["experiment_name"],
    protocol=CONFIG["protocols"][mode],
    fold=fold,
    seed=seed,
    WA=score,
    UA=score,
    macro_F1=score,
)
metrics["task_identity"] = dict(
    metrics["task_identity"],
    protocol=CONFIG["protocols"][mode],
    num_folds=5 if mode == "loso" else 10,
)
(out / "test_metrics.json").write_text(json.dumps(metrics))
"""


def _folds(mode):
    if mode == "loso":
        return [f"session{k}" for k in range(1, 6)]
    return [f"Ses0{k}{side}" for k in range(1, 6) for side in "FM"]


@pytest.fixture
def stub_python(iemocap_trained_run, tmp_path):
    """The stub interpreter; its test_metrics.json has the fields of a real
    run's (the session fixture iemocap_trained_run), scores made up per fold."""
    from iemocap_prepare import PROTOCOL_NAMES

    template = json.loads((iemocap_trained_run[0] / "test_metrics.json").read_text())
    scores = {
        mode: {
            f"{seed}/{fold}": round(0.4 + 0.03 * index + 0.01 * (seed % 3), 4)
            for seed in (1993, 7)
            for index, fold in enumerate(_folds(mode))
        }
        for mode in ("loso", "lospk")
    }
    config = tmp_path / "stub.json"
    calls = tmp_path / "calls.jsonl"
    config.write_text(
        json.dumps(
            {
                "python": sys.executable,
                "calls": str(calls),
                "template": template,
                "protocols": PROTOCOL_NAMES,
                "scores": scores,
            }
        )
    )
    stub = tmp_path / "python_stub"
    stub.write_text(STUB.format(python=sys.executable, config=str(config)))
    stub.chmod(0o755)
    return stub, calls, scores


def _calls(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("mode, seeds", [("loso", ["1993", "7"]), ("lospk", ["1993"])])
def test_run_loso_loops_over_folds_and_seeds_and_aggregates(
    stub_python, tmp_path, mode, seeds
):
    stub, calls_log, scores = stub_python
    data = tmp_path / "IEMOCAP_full_release"  # only checked to exist
    data.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    extra = ["--number_of_epochs=1", "--experiment_name=tiny", *FAST_TRAINING]
    env = {"PYTHON": str(stub)}
    if mode == "lospk":
        env["SPLIT_MODE"] = "lospk"  # SEEDS unset: the default seed 1993
    else:
        env["SEEDS"] = " ".join(seeds)
    proc = run_script(
        [
            RECIPE / "run_loso.sh",
            os.path.relpath(HPARAMS, work),  # resolved by the script
            data,
            *extra,
        ],
        cwd=work,
        env=env,
    )
    # One train.py call per fold and seed, seeds outermost, with the fold's
    # options and the extra overrides passed on unchanged.
    calls = _calls(calls_log)
    expected = []
    for seed in seeds:
        for fold in _folds(mode):
            session = fold[-1] if mode == "loso" else fold[4]
            options = [f"--split_mode={mode}", f"--test_session={session}"]
            if mode == "lospk":
                options.append(f"--test_speaker={fold}")
            expected.append(
                [
                    str(RECIPE / "train.py"),
                    str(HPARAMS),
                    f"--data_folder={data}",
                    *options,
                    f"--seed={seed}",
                    *extra,
                ]
            )
    assert calls == expected
    assert len(calls) == {"loso": 10, "lospk": 10}[mode]

    # aggregate.py ran (for real) over the run folders: one experiment, the
    # protocol's name, mean ± std over every fold and seed.
    results = work / "results" / "IEMOCAP"
    runs = sorted(results.glob(f"tiny/{mode}/seed_*/*/test_metrics.json"))
    assert len(runs) == len(calls)
    summary = json.loads((results / "summary.json").read_text())
    (experiment,) = summary["experiments"]
    assert experiment["experiment"] == "tiny"
    protocol = "leave-one-session-out" if mode == "loso" else "leave-one-speaker-out"
    assert protocol in experiment["protocol"]
    assert experiment["n_runs"] == len(calls)
    expected_scores = [scores[mode][f"{s}/{f}"] for s in seeds for f in _folds(mode)]
    wa = experiment["metrics"]["WA"]
    assert wa["mean"] == pytest.approx(statistics.mean(expected_scores))
    assert wa["std"] == pytest.approx(statistics.stdev(expected_scores))
    assert sorted(row["fold"] for row in experiment["per_fold"]) == sorted(_folds(mode))
    table = (results / "summary.md").read_text()
    assert "tiny" in table and f"{100 * wa['mean']:.2f} ±" in table
    assert "±" in proc.stdout


def test_run_loso_usage_errors(tmp_path):
    proc = run_script([RECIPE / "run_loso.sh"], cwd=tmp_path, expect_ok=False)
    assert proc.returncode == 2 and "HPARAMS DATA_FOLDER" in proc.stdout
    proc = run_script(
        [RECIPE / "run_loso.sh", RECIPE / "hparams" / "train_wavlm_large.yaml", "nope"],
        cwd=tmp_path,
        expect_ok=False,
    )
    assert proc.returncode == 2 and "data folder not found: nope" in proc.stderr


def test_demo_runs_end_to_end_and_refuses_foreign_folder(tmp_path):
    out = tmp_path / "demo"
    proc = run_script(
        [
            sys.executable,
            RECIPE / "run_demo.py",
            f"--out={out}",
            "--utterances-per-speaker=6",
            "--epochs=2",
        ],
        cwd=tmp_path,
    )
    assert "| test |" in proc.stdout and "chance level: 25.00 %" in proc.stdout
    assert (out / "run" / "test_metrics.json").is_file()

    # A folder the demo did not write is refused before anything is written
    # (its main() in this process; the exit message is what the command line
    # prints).
    demo = load_recipe_script(RECIPE, "run_demo.py")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        demo.main([f"--out={foreign}"])
    assert str(exit_info.value.code).startswith("error: ")
    assert "was not written by this demo" in str(exit_info.value.code)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_readme_commands_match_ci():
    """.ci/run runs the README's test command; the README has both commands."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    proc = run_script(["bash", ROOT / ".ci" / "run", "--print-command"], cwd=ROOT)
    command = proc.stdout.strip()
    assert command and "pytest" in command
    assert command in readme
    assert "--print-command" in ci
    assert "recipes/IEMOCAP/run_demo.py" in readme
