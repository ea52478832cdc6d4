"""``--num_threads`` (recipes) and ``--num-threads`` (sser-predict).

Default: what torch picks, at most the CPUs this process may use; an
explicit number is set as given. One helper for both
(:mod:`sser_lobes.encoders.threads`).
"""

import pytest
import torch
from conftest import IEMOCAP, run_recipe

from sser_lobes.encoders import threads

IEMOCAP_HPARAMS = IEMOCAP / "hparams" / "train_wavlm_large.yaml"


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_is_torchs_choice_capped_at_the_usable_cpus(
    monkeypatch, restore_threads
):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(threads.torch, "get_num_threads", lambda: 8)
    assert threads.default_num_threads() == 1
    monkeypatch.setattr(threads.torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert threads.default_num_threads() == 1


def test_an_explicit_number_is_set(restore_threads):
    assert threads.set_num_threads(2) == 2 and torch.get_num_threads() == 2
    assert threads.set_num_threads(1) == 1 and torch.get_num_threads() == 1


def test_the_recipes_take_num_threads(
    iemocap_corpus, tiny_models, tmp_path, restore_threads
):
    base = [
        IEMOCAP_HPARAMS,
        f"--data_folder={iemocap_corpus}",
        f"--ssl_source={tiny_models['wavlm']}",
        f"--output_folder={tmp_path / 'run'}",
    ]
    run = run_recipe(IEMOCAP, [*base, "--num_threads=0"], expect_ok=False)
    assert run.error == (
        "error: --num_threads must be an integer >= 1 (or null: the default); got 0"
    )
    assert not (tmp_path / "run").exists()
    run = run_recipe(
        IEMOCAP,
        [
            *base,
            "--num_threads=2",
            "--number_of_epochs=1",
            "--num_workers=0",
            "--noprogressbar",
        ],
    )
    assert torch.get_num_threads() == 2
    assert (
        "torch runs with 2 CPU thread(s)" in (tmp_path / "run" / "log.txt").read_text()
    )


def test_sser_predict_takes_num_threads(capsys):
    from sser_lobes.inference import predict

    with pytest.raises(SystemExit) as info:
        predict.main(["--model", "m", "a.wav", "--num-threads", "0"])
    assert info.value.code == 2
    assert "--num-threads must be an integer >= 1" in capsys.readouterr().err
