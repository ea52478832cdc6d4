"""Training targets: the majority label (hard) or the annotators' votes (soft).

The recipes' options (hparams keys, all defaulting to the references'
behaviour):

* ``targets``: ``hard`` (cross-entropy on the majority label, the
  references') or ``soft`` (cross-entropy against each utterance's vote
  distribution over the task's classes,
  :class:`~sser_lobes.nnet.losses.SoftTargetCrossEntropy`; an utterance
  without votes trains on its label); class weights apply either way;
* ``soft_label_smoothing``: label smoothing of the soft targets;
* ``use_no_agreement``: the weight of the utterances that have votes but no
  majority label (MSP-Podcast's O and X, IEMOCAP's ``xxx`` and ``oth``, a
  Custom CSV row with votes and an empty emotion); 0 (the default) leaves
  them out, as the references do; ``True`` is 1;
* ``calibration``: the post-hoc calibration fitted on the validation set
  after training (``temperature``, ``vector`` or ``none``;
  :mod:`sser_lobes.training.reliability`).

:func:`check_target_options` checks them on the hparams preview;
:func:`target_options` is what the split guard and the metrics files
record; :func:`categorical_manifest_data` reads a manifest and keeps the
utterances a split trains or evaluates on; :func:`vote_items` adds the vote
targets to the datasets when the manifests carry votes.

Example
-------
>>> check_target_options({"targets": "soft", "use_no_agreement": True})
>>> target_options({"targets": "soft", "use_no_agreement": True})
{'targets': 'soft', 'soft_label_smoothing': 0.0, 'use_no_agreement': 1.0}
"""

import logging
import math

from sser_lobes.dataio.pipelines import read_manifest, vote_target_pipeline
from sser_lobes.dataio.votes import VOTES_FIELD, vote_distribution
from sser_lobes.errors import ManifestError, RecipeError
from sser_lobes.evaluation.calibration import CALIBRATION_METHODS
from sser_lobes.nnet.losses import SoftTargetCrossEntropy

logger = logging.getLogger(__name__)

TARGETS = ("hard", "soft")


def no_agreement_weight(hparams):
    """``use_no_agreement`` as a number (True: 1.0, False / absent: 0.0).

    Example
    -------
    >>> no_agreement_weight({"use_no_agreement": 0.3}), no_agreement_weight({})
    (0.3, 0.0)
    """
    value = hparams.get("use_no_agreement", 0.0)
    if value is True:
        return 1.0
    if value is False or value is None:
        return 0.0
    return float(value)


def check_target_options(hparams, task="categorical"):
    """One :class:`RecipeError` line for a bad or contradictory option.

    Example
    -------
    >>> check_target_options({"targets": "hard", "use_no_agreement": 1.0})
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --use_no_agreement=1.0 needs --targets=soft: ...
    """
    targets = hparams.get("targets", "hard")
    if targets not in TARGETS:
        raise RecipeError(f"--targets must be hard or soft; got {targets!r}")
    smoothing = hparams.get("soft_label_smoothing", 0.0)
    if (
        isinstance(smoothing, bool)
        or not isinstance(smoothing, (int, float))
        or not 0.0 <= smoothing < 1.0
    ):
        raise RecipeError(
            f"--soft_label_smoothing must be a number in [0, 1); got {smoothing!r}"
        )
    weight = hparams.get("use_no_agreement", 0.0)
    if not isinstance(weight, bool) and (
        not isinstance(weight, (int, float))
        or not math.isfinite(weight)
        or not 0.0 <= weight <= 10.0
    ):
        raise RecipeError(
            "--use_no_agreement must be True, False or a weight in [0, 10]; got "
            f"{weight!r}"
        )
    calibration = hparams.get("calibration", "temperature")
    if calibration not in CALIBRATION_METHODS:
        raise RecipeError(
            f"--calibration must be one of {', '.join(CALIBRATION_METHODS)}; got "
            f"{calibration!r}"
        )
    if targets == "soft" and task != "categorical":
        raise RecipeError(
            "--targets=soft trains on the annotators' class votes: it is for the "
            f"categorical task, not {task!r}"
        )
    if targets == "hard" and no_agreement_weight(hparams) > 0:
        raise RecipeError(
            f"--use_no_agreement={weight} needs --targets=soft: the utterances "
            "without a majority label train on their votes only"
        )
    if targets == "hard" and smoothing:
        raise RecipeError(
            "--soft_label_smoothing smooths the vote targets of --targets=soft; "
            "for hard labels use --label_smoothing"
        )
    if targets == "soft" and hparams.get("label_smoothing", 0.0):
        raise RecipeError(
            "--label_smoothing smooths hard labels; with --targets=soft use "
            "--soft_label_smoothing"
        )
    if targets == "soft" and hparams.get("loss", "weighted_ce") != "weighted_ce":
        raise RecipeError(
            f"--targets=soft trains with cross-entropy against the votes; "
            f"--loss={hparams.get('loss')} is for hard labels"
        )


def target_options(hparams):
    """The options that change what a model trains on, as recorded by the
    split guard and the metrics files.

    Example
    -------
    >>> target_options({})
    {'targets': 'hard', 'soft_label_smoothing': 0.0, 'use_no_agreement': 0.0}
    """
    return {
        "targets": hparams.get("targets", "hard"),
        "soft_label_smoothing": float(hparams.get("soft_label_smoothing", 0.0)),
        "use_no_agreement": no_agreement_weight(hparams),
    }


def soft_targets(hparams):
    """Whether the run trains on the votes."""
    return hparams.get("targets", "hard") == "soft"


def soft_loss(hparams, class_weight=None):
    """The soft-target loss of the run (class weights and smoothing)."""
    return SoftTargetCrossEntropy(
        weight=class_weight,
        label_smoothing=float(hparams.get("soft_label_smoothing", 0.0)),
    )


def manifests_have_votes(paths):
    """Whether every manifest gives every utterance a ``votes`` field and some
    utterance has votes.

    Example
    -------
    >>> import tempfile, json, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.json")
    >>> _ = open(path, "w").write(json.dumps({"u1": {"emo": "neu", "votes": None}}))
    >>> manifests_have_votes([path])
    False
    """
    found = False
    for path in paths:
        data = read_manifest(path)
        if not all(isinstance(e, dict) and VOTES_FIELD in e for e in data.values()):
            return False
        found = found or any(e.get(VOTES_FIELD) for e in data.values())
    return found


def categorical_manifest_data(path, classes, training, hparams):
    """The entries of a manifest a split uses, in file order.

    Labelled utterances are kept (their ``emo`` must be one of ``classes``);
    an utterance without a label is kept for training only when the run
    trains on the votes (``targets: soft``), weights them
    (``use_no_agreement`` > 0), and it has votes in ``classes``. Evaluation
    splits keep labelled utterances only (the hard metrics need a label).

    Returns
    -------
    dict
        Utterance id -> entry.
    """
    data = read_manifest(path)
    keep_unlabelled = (
        training and soft_targets(hparams) and no_agreement_weight(hparams) > 0
    )
    kept = {}
    for utt, entry in data.items():
        label = entry.get("emo")
        if label is None:
            if keep_unlabelled and vote_distribution(entry.get(VOTES_FIELD), classes):
                kept[utt] = entry
            continue
        if label not in classes:
            raise ManifestError(
                f"{path}: utterance {utt} has label {label!r}, which is not one of "
                f"the classes {list(classes)} of the hparams."
            )
        kept[utt] = entry
    return kept


def vote_items(hparams, manifests):
    """The datasets' vote-target items and output keys, when the manifests
    carry votes; ``([], [])`` otherwise (soft targets then fail with one
    line: there is nothing to train on).

    Arguments
    ---------
    hparams : dict
        ``emotions``, ``targets``, ``use_no_agreement``.
    manifests : list of path
        The manifests the run reads.
    """
    if manifests_have_votes(manifests):
        item = vote_target_pipeline(hparams["emotions"], no_agreement_weight(hparams))
        return [item], ["emo_target", "has_votes", "target_weight"]
    if soft_targets(hparams):
        raise RecipeError(
            "--targets=soft needs the annotators' votes, and the prepared manifests "
            f"({', '.join(str(m) for m in manifests)}) have none: the corpus ships "
            "no vote file that the preparation could read (see its warnings), or "
            "the Custom CSV has no votes column"
        )
    return [], []
