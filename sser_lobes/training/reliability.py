"""After training: calibrate the selected model and report how far to trust it.

Once the checkpoint is selected and evaluated, :func:`finish_reliability`

1. fits the run's calibration (``calibration``: temperature scaling by
   default, vector scaling, or none) on the validation split's logits
   (:func:`sser_lobes.evaluation.calibration.fit_calibration`) and writes it
   into the run's ``save/sser_model.json`` (``"calibration"``), which the
   export carries into the model folder: the recognizer, ``sser-predict``,
   ONNX and int8 then return calibrated probabilities;
2. adds to every evaluated split's ``<split>_metrics.json``:
   ``calibration`` (ECE, adaptive ECE, NLL and Brier score of the raw and
   the calibrated probabilities), ``agreement`` (divergence from the
   annotators' votes and accuracy on clear-majority and ambiguous
   utterances, when the corpus has votes), ``groups`` (WA / UA / macro-F1
   per gender and per speaker, worst group, spread, largest gap with the
   groups' sizes) and ``selective`` (the thresholds that reach 90 % and 95 %
   accuracy, found on the validation split and applied to the others, and
   the area under the risk-coverage curve), plus the flat keys
   ``ECE_raw`` / ``ECE_calibrated`` for the aggregation tables;
3. draws ``<split>_reliability_diagram.png`` and writes the coverage-accuracy
   curve as ``<split>_coverage_accuracy.json`` and ``.png``.

The brain collects the raw outputs of each evaluation in an
:class:`~sser_lobes.training.eval_outputs.EvaluationOutputs`.
"""

import json
import logging
from pathlib import Path

from sser_lobes.dataio.files import atomic_write_json
from sser_lobes.dataio.pipelines import read_manifest
from sser_lobes.evaluation.agreement import agreement_metrics
from sser_lobes.evaluation.calibration import (
    N_BINS,
    calibrated_probabilities,
    calibration_metrics,
    fit_calibration,
    reliability_bins,
    softmax,
)
from sser_lobes.evaluation.groups import fairness_report, summary_line
from sser_lobes.evaluation.plots import plot_coverage_accuracy, plot_reliability_diagram
from sser_lobes.evaluation.selective import selective_report
from sser_lobes.training.brain import RUN_DESCRIPTION

logger = logging.getLogger(__name__)
#: Manifest fields that group the utterances in the fairness report.
GROUPINGS = ("gender", "speaker")


def update_json(path, updates):
    """Merge ``updates`` into the JSON object of ``path`` (atomic write)."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(updates)
    atomic_write_json(path, data)
    return data


def reliability_section(
    ids, logits, targets, distributions, labels, calibration, entries, thresholds=None
):
    """What a split's metrics file gains (see the module docstring).

    Arguments
    ---------
    ids, logits, targets, distributions
        :meth:`~sser_lobes.training.eval_outputs.EvaluationOutputs.gather`.
    labels : list of str
    calibration : dict or None
        The fitted calibration.
    entries : dict
        The split's manifest entries (``gender``, ``speaker``).
    thresholds : dict or None
        Thresholds found on the validation split
        (:func:`~sser_lobes.evaluation.selective.selective_report`'s
        ``thresholds``), applied to this split.

    Returns
    -------
    dict
    """
    raw = softmax(logits)
    calibrated = calibrated_probabilities(logits, calibration)
    section = {
        "calibration": {
            "method": calibration["method"] if calibration else "none",
            "temperature": calibration["temperature"] if calibration else None,
            "bias": calibration.get("bias") if calibration else None,
            "fitted_on": calibration.get("fitted_on") if calibration else None,
            "raw": calibration_metrics(raw, targets, N_BINS),
            "calibrated": calibration_metrics(calibrated, targets, N_BINS),
        }
    }
    section["ECE_raw"] = section["calibration"]["raw"]["ECE"]
    section["ECE_calibrated"] = section["calibration"]["calibrated"]["ECE"]
    agreement = agreement_metrics(raw, targets, distributions)
    if agreement is not None:
        section["agreement"] = agreement
    predictions = raw.argmax(axis=1)
    attributes = {
        name: [(entries.get(u) or {}).get(name) for u in ids] for name in GROUPINGS
    }
    section["groups"] = fairness_report(targets, predictions, labels, attributes)
    section["selective"] = selective_report(
        calibrated, targets, labels, thresholds=thresholds
    )
    section["_figures"] = {
        "raw_bins": reliability_bins(raw, targets, N_BINS),
        "calibrated_bins": reliability_bins(calibrated, targets, N_BINS),
    }
    return section


def _write_figures(folder, split, section, title):
    figures = section.pop("_figures")
    calibration = section["calibration"]
    curves = {"raw": (figures["raw_bins"], calibration["raw"]["ECE"])}
    if calibration["method"] != "none":
        curves["calibrated"] = (
            figures["calibrated_bins"],
            calibration["calibrated"]["ECE"],
        )
    diagram = plot_reliability_diagram(
        curves, folder / f"{split}_reliability_diagram.png", title=title
    )
    calibration["reliability_diagram"] = diagram.name
    calibration["bins"] = {
        "raw": figures["raw_bins"],
        "calibrated": figures["calibrated_bins"],
    }
    selective = section["selective"]
    curve_file = folder / f"{split}_coverage_accuracy.json"
    atomic_write_json(
        curve_file,
        {
            "split": split,
            "probabilities": "calibrated" if calibration["method"] != "none" else "raw",
            "curve": selective.pop("curve"),
            "thresholds": selective["thresholds"],
            "AURC": selective["AURC"],
        },
    )
    marks = [t for t in selective["thresholds"].values() if t is not None]
    curve = json.loads(curve_file.read_text(encoding="utf-8"))["curve"]
    plot_coverage_accuracy(
        curve, folder / f"{split}_coverage_accuracy.png", title=title, marks=marks
    )
    selective["curve_file"] = curve_file.name
    selective["figure"] = f"{split}_coverage_accuracy.png"


def finish_reliability(hparams, outputs, manifests, valid_split, checkpoint=None):
    """Calibrate on ``valid_split`` and complete every split's reports.

    Arguments
    ---------
    hparams : dict
        ``output_folder``, ``save_folder``, ``emotions``, ``calibration``,
        ``experiment_name``.
    outputs : dict
        Split name -> :class:`~sser_lobes.training.eval_outputs.EvaluationOutputs`
        (labelled splits).
    manifests : dict
        Split name -> manifest path.
    valid_split : str
        The split the calibration and the thresholds are fitted on.
    checkpoint : str or None
        The evaluated checkpoint's folder name (recorded with the
        calibration: the export refuses to pair it with another checkpoint).

    Returns
    -------
    list of str
        Lines to print (calibration and the worst groups of each split).
    """
    folder = Path(hparams["output_folder"])
    labels = list(hparams["emotions"])
    method = hparams.get("calibration", "temperature")
    _, logits, targets, _ = outputs[valid_split].gather()
    calibration = fit_calibration(logits, targets, method)
    if calibration is not None:
        calibration["fitted_on"] = valid_split
        calibration["checkpoint"] = checkpoint
    description = Path(hparams["save_folder"]) / RUN_DESCRIPTION
    if description.is_file():
        data = json.loads(description.read_text(encoding="utf-8"))
        data.pop("calibration", None)
        if calibration is not None:
            data["calibration"] = calibration
        atomic_write_json(description, data)
    lines = []
    if calibration is not None:
        shown = ", ".join(f"{t:.3f}" for t in calibration["temperature"][:8])
        lines.append(
            f"calibration ({method}, fitted on {valid_split}): temperature {shown}; "
            f"{valid_split} NLL {calibration['nll_before']:.4f} -> "
            f"{calibration['nll_after']:.4f}"
        )
    order = [valid_split] + [s for s in outputs if s != valid_split]
    thresholds = None
    title = hparams.get("experiment_name")
    for split in order:
        ids, logits, targets, distributions = outputs[split].gather()
        entries = read_manifest(manifests[split])
        section = reliability_section(
            ids,
            logits,
            targets,
            distributions,
            labels,
            calibration,
            entries,
            thresholds=thresholds,
        )
        if split == valid_split:
            thresholds = section["selective"]["thresholds"]
        else:
            given = section["selective"].pop("at_given_thresholds", None)
            section["selective"]["at_valid_thresholds"] = given
        _write_figures(folder, split, section, f"{title} {split}")
        metrics_file = folder / f"{split}_metrics.json"
        if metrics_file.is_file():
            update_json(metrics_file, section)
        raw = section["calibration"]["raw"]
        cal = section["calibration"]["calibrated"]
        lines.append(
            f"{split}: ECE {100 * raw['ECE']:.2f} % -> {100 * cal['ECE']:.2f} %, NLL "
            f"{raw['NLL']:.4f} -> {cal['NLL']:.4f}"
        )
        lines += [f"{split}: {line}" for line in summary_line(section["groups"])]
    return lines
