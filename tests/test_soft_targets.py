"""Training on the annotators' votes (``--targets=soft``).

The loss is cross-entropy against the vote distribution (hard cross-entropy
on one-hot targets, class weights and smoothing included); the options are
checked in one line each; the utterances without a majority label train only
with ``--use_no_agreement``; a run folder never resumes checkpoints trained
on other targets; and on the synthetic IEMOCAP, whose votes have a known
plan, soft-target training matches the annotators better (lower mean KL
divergence on the test set) than hard training on the same data and seed.
"""

import json
import shutil

import pytest
import torch
from conftest import IEMOCAP, iemocap_argv, run_recipe

from sser_lobes.dataio.pipelines import vote_target_pipeline
from sser_lobes.errors import RecipeError
from sser_lobes.nnet.losses import SoftTargetCrossEntropy
from sser_lobes.training.targets import (
    categorical_manifest_data,
    check_target_options,
)


def test_soft_loss_on_one_hot_targets_is_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    one_hot = torch.nn.functional.one_hot(labels, 4).float()
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5])
    for smoothing in (0.0, 0.1):
        soft = SoftTargetCrossEntropy(weight, label_smoothing=smoothing)(
            logits, one_hot
        )
        hard = torch.nn.functional.cross_entropy(
            logits, labels, weight=weight, label_smoothing=smoothing
        )
        assert torch.allclose(soft, hard, atol=1e-6)
    # Against a distribution: the gradient is that of KL(q || p).
    targets = torch.softmax(torch.randn(6, 4), dim=-1)
    loss = SoftTargetCrossEntropy()(logits, targets)
    (grad,) = torch.autograd.grad(loss, logits)
    expected = (torch.softmax(logits, -1) - targets) / 6
    assert torch.allclose(grad, expected, atol=1e-6)
    # An utterance of weight 0 changes nothing.
    weights = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    part = SoftTargetCrossEntropy()(logits[:5], targets[:5])
    assert torch.allclose(SoftTargetCrossEntropy()(logits, targets, weights), part)


def test_vote_targets_fall_back_to_the_label():
    item = vote_target_pipeline(["neu", "ang"], no_agreement_weight=0.25)
    target, has_votes, weight = item.func({"fru": 2.0}, "ang")
    assert target.tolist() == [0.0, 1.0] and not has_votes.item()
    target, has_votes, weight = item.func({"neu": 1.0, "ang": 3.0}, None)
    assert target.tolist() == [0.25, 0.75] and weight.item() == 0.25


@pytest.mark.parametrize(
    "options, message",
    [
        ({"targets": "votes"}, "--targets must be hard or soft"),
        ({"use_no_agreement": 1.0}, "--use_no_agreement=1.0 needs --targets=soft"),
        ({"soft_label_smoothing": 0.1}, "--soft_label_smoothing smooths"),
        ({"targets": "soft", "label_smoothing": 0.1}, "use --soft_label_smoothing"),
        ({"targets": "soft", "loss": "focal"}, "--loss=focal is for hard labels"),
        ({"use_no_agreement": -1}, "--use_no_agreement must be True, False"),
        ({"calibration": "platt"}, "--calibration must be one of"),
    ],
)
def test_options_are_checked_in_one_line(options, message):
    with pytest.raises(RecipeError, match=message) as error:
        check_target_options(options)
    assert "\n" not in str(error.value)
    with pytest.raises(RecipeError, match="for the categorical task"):
        check_target_options({"targets": "soft"}, task="attributes")


def test_no_agreement_utterances_train_only_when_asked(tmp_path):
    path = tmp_path / "train.json"
    entries = {
        "a": {"emo": "neu", "votes": {"neu": 3.0}},
        "b": {"emo": None, "votes": {"neu": 1.0, "ang": 1.0}},
        "c": {"emo": None, "votes": {"fru": 3.0}},
    }
    path.write_text(json.dumps(entries))
    classes = ["neu", "ang"]
    soft = {"targets": "soft", "use_no_agreement": 0.5}
    assert list(categorical_manifest_data(path, classes, True, soft)) == ["a", "b"]
    assert list(categorical_manifest_data(path, classes, False, soft)) == ["a"]
    hard = {"targets": "hard", "use_no_agreement": 0.0}
    assert list(categorical_manifest_data(path, classes, True, hard)) == ["a"]


@pytest.fixture(scope="module")
def soft_run(iemocap_corpus, tiny_models, tmp_path_factory):
    """The fold of ``iemocap_trained_run`` (same data, seed and epochs),
    trained on the votes."""
    out = tmp_path_factory.mktemp("soft") / "run"
    argv = iemocap_argv(
        iemocap_corpus,
        tiny_models["wavlm"],
        out,
        "--test_session=2",
        "--targets=soft",
        epochs=8,
    )
    run_recipe(IEMOCAP, argv)
    return out


def test_soft_targets_match_the_annotators_better(iemocap_trained_run, soft_run):
    hard_run, _ = iemocap_trained_run
    hard = json.loads((hard_run / "test_metrics.json").read_text())
    soft = json.loads((soft_run / "test_metrics.json").read_text())
    assert hard["training_targets"]["targets"] == "hard"
    assert soft["training_targets"]["targets"] == "soft"
    assert hard["n"] == soft["n"]
    assert hard["agreement"]["n_with_votes"] == soft["agreement"]["n_with_votes"] > 0
    kl = (hard["agreement"]["KL"], soft["agreement"]["KL"])
    assert kl[1] < kl[0], f"mean KL to the votes: hard {kl[0]:.4f}, soft {kl[1]:.4f}"
    for run in (hard, soft):  # the hard-label metrics stay comparable
        assert {"WA", "UA", "macro_F1"} <= set(run)
        kinds = run["agreement"]["clear"]["n"] + run["agreement"]["ambiguous"]["n"]
        assert kinds == run["agreement"]["n_with_votes"]
        assert run["agreement"]["ambiguous"]["n"] > 0


def test_a_run_folder_never_resumes_other_targets(
    iemocap_trained_run, iemocap_corpus, tiny_models, tmp_path
):
    hard_run, _ = iemocap_trained_run
    copy = tmp_path / "run"
    shutil.copytree(hard_run, copy)
    argv = iemocap_argv(
        iemocap_corpus,
        tiny_models["wavlm"],
        copy,
        "--test_session=2",
        "--targets=soft",
        "--use_no_agreement=1.0",
        epochs=8,
    )
    run = run_recipe(IEMOCAP, argv, expect_ok=False)
    assert run.error is not None and "trained with other targets" in run.error
    assert "targets 'hard' -> 'soft'" in run.error
