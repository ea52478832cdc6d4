"""The LOSO loop, aggregation and the embedded-default demo, run for real."""

import json
import sys

from conftest import FAST_TRAINING, RECIPES, ROOT, run_script

RECIPE = RECIPES / "IEMOCAP"


def test_run_loso_loops_five_sessions_and_aggregates(tiny_models, tmp_path):
    from sser_lobes.synthetic.iemocap import make_iemocap_corpus

    corpus = make_iemocap_corpus(tmp_path / "data", utterances_per_speaker=4)
    results = tmp_path / "results" / "IEMOCAP"  # the recipe's default output root
    proc = run_script(
        [
            RECIPE / "run_loso.sh",
            RECIPE / "hparams" / "train_wavlm_large.yaml",
            corpus,
            f"--ssl_source={tiny_models['wavlm']}",
            "--number_of_epochs=1",
            "--experiment_name=tiny",
            *FAST_TRAINING,
        ],
        cwd=tmp_path,
        env={"PYTHON": sys.executable, "SEEDS": "1993 7"},
        timeout=900,
    )
    runs = sorted(results.glob("tiny/loso/seed_*/session*/test_metrics.json"))
    assert len(runs) == 10  # 5 sessions x 2 seeds
    folds = {json.loads(r.read_text())["fold"] for r in runs}
    assert folds == {f"session{k}" for k in range(1, 6)}
    summary = json.loads((results / "summary.json").read_text())
    text = json.dumps(summary)
    assert "tiny" in text and "leave-one-session-out" in text
    assert (results / "summary.md").read_text().count("tiny") >= 1
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

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    proc = run_script(
        [sys.executable, RECIPE / "run_demo.py", f"--out={foreign}"],
        cwd=tmp_path,
        expect_ok=False,
    )
    assert proc.returncode != 0 and "was not written by this demo" in proc.stderr
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
