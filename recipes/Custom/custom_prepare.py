#!/usr/bin/env python3
"""Prepare the manifests of any labelled speech corpus described by a CSV file.

    python custom_prepare.py --csv_file corpus.csv --save_folder prep \
        [--split_mode speaker_kfold|given|random] [--num_folds 5] [--test_fold 1] \
        [--emotions neu,hap,sad,ang] [--label_map exc:hap] \
        [--test_csv other.csv --test_label_map calm:neu]

The CSV (or JSON lines) format is that of :mod:`sser_lobes.dataio.corpus_csv`:
``wav`` and ``emotion`` columns, ``speaker`` for speaker-independent folds,
optionally ``id``, ``gender``, ``text``, ``split``, ``start`` / ``end``
(segments of longer recordings); other columns are kept. Any sample rate and
channel count is accepted: the recipe reads the audio as 16 kHz mono with the
inference interface's conversion.

Protocols (``split_mode``):

* ``speaker_kfold`` (default): the speakers are grouped into ``num_folds``
  folds (:func:`sser_lobes.dataio.splits.stratified_group_folds`:
  scikit-learn's ``StratifiedGroupKFold``, then a search that puts every
  class into every fold where the speakers allow it, and stratifies by
  class as far as they allow); fold ``test_fold`` (from 1) is the test set;
  ``split_info.json`` records each fold's speakers and class counts. With
  fewer speakers than folds, each speaker is a fold (leave-one-speaker-out,
  in sorted order). Validation speakers are
  drawn from the training side (``valid_ratio`` of its utterances, whole
  speakers, so that valid is speaker-disjoint from train too; with one
  training speaker, or ``valid_split: utterances``, a stratified share of its
  utterances: then valid is not speaker-disjoint from train).
* ``given``: the CSV's ``split`` column (train / valid / test); without valid
  rows, valid is drawn from train as above.
* ``random``: a seeded, class-stratified utterance split (``test_ratio``,
  ``valid_ratio``): speaker-DEPENDENT, labelled so everywhere.

With ``test_csv``, another corpus is the test set (cross-corpus): the whole
``csv_file`` is train + valid (as its protocol draws valid), the test rows'
classes go through ``test_label_map`` and rows of classes the model does not
have are dropped and counted.

Classes: every class of the CSV (after ``label_map``), sorted, or
``emotions`` (which picks and orders them); rows of other classes are dropped
and counted.

Votes: a ``votes`` column (``"neu:3,ang:1"``) or ``votes_<class>`` columns
give each utterance's annotator votes (``"votes"`` in the manifests, see
:mod:`sser_lobes.dataio.corpus_csv`). A row with votes and an empty
``emotion`` has no majority label: it is kept with ``"emo": null`` when its
votes name one of the classes (the recipe trains on it with
``--targets=soft --use_no_agreement=W``), in the split of its speaker (test
or valid when its speaker is there, train otherwise; with ``given``, its
``split`` column), and never evaluated.

Bad rows (missing value, missing / unreadable audio, segment
outside its file, duplicate id, ...) are skipped and listed with file and
line, the rest is prepared. Outputs in ``save_folder``: ``train.json``,
``valid.json``, ``test.json``, ``split_info.json`` (the protocol, folds,
speakers and counts), ``prep_summary.json`` (rows read, kept, skipped with
reasons, dropped classes) and ``prepare_options.json``; a re-run with the
same options and the same CSV is skipped.

Authors
 * sser authors 2026
"""

import argparse
import logging
import os
import random
import sys
from collections import Counter
from pathlib import Path

from sser_lobes.dataio.corpus_csv import (
    audio_key,
    file_identities,
    parse_class_list,
    parse_label_map,
    read_corpus,
    read_table,
    require_columns,
)
from sser_lobes.dataio.files import atomic_write_json, file_sha256
from sser_lobes.dataio.preparation import (
    absent_classes,
    reusable,
    run_preparation_cli,
    write_state,
)
from sser_lobes.dataio.row_report import log_summary
from sser_lobes.dataio.splits import stratified_group_folds, stratified_share
from sser_lobes.dataio.votes import vote_distribution
from sser_lobes.errors import CorpusError, PreparationError

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
SPLIT_MODES = ("speaker_kfold", "given", "random")
VALID_SPLITS = ("speakers", "utterances")
SPLIT_INFO_FILE = "split_info.json"
SUMMARY_FILE = "prep_summary.json"
_WRITER = "custom_prepare"
_FORMAT_VERSION = 3  # 2: fold_counts, file_disjoint; duplicate audio dropped; 3: votes


def validate_options(
    split_mode="speaker_kfold",
    num_folds=5,
    test_fold=1,
    valid_ratio=0.1,
    test_ratio=0.1,
    valid_split="speakers",
    seed=1993,
    emotions=None,
    label_map=None,
    test_label_map=None,
    allow_overlap=False,
):
    """Check the protocol options; a ``ValueError`` names the bad one.

    Returns the normalised options (``emotions`` a list or None, the label
    maps as dicts).

    Example
    -------
    >>> validate_options(num_folds=5, test_fold=6)
    Traceback (most recent call last):
    ...
    ValueError: test_fold must be between 1 and num_folds (5), got 6
    """
    if split_mode not in SPLIT_MODES:
        raise ValueError(
            f"split_mode must be one of {', '.join(SPLIT_MODES)}, got {split_mode!r}"
        )
    if valid_split not in VALID_SPLITS:
        raise ValueError(
            f"valid_split must be one of {', '.join(VALID_SPLITS)}, got {valid_split!r}"
        )
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 0:
        raise ValueError(
            f"num_folds must be an integer >= 2 (0: one fold per speaker), got "
            f"{num_folds!r}"
        )
    if num_folds == 1:
        raise ValueError("num_folds must be >= 2 (0: one fold per speaker), got 1")
    if isinstance(test_fold, bool) or not isinstance(test_fold, int) or test_fold < 1:
        raise ValueError(f"test_fold counts from 1, got {test_fold!r}")
    if num_folds and test_fold > num_folds:
        raise ValueError(
            f"test_fold must be between 1 and num_folds ({num_folds}), got {test_fold}"
        )
    for name, ratio in (("valid_ratio", valid_ratio), ("test_ratio", test_ratio)):
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise ValueError(f"{name} must be a number in (0, 1), got {ratio!r}")
        if not 0 < ratio < 1:
            raise ValueError(f"{name} must be in (0, 1), got {ratio}")
    if allow_overlap not in (True, False):
        raise ValueError(f"allow_overlap must be True or False, got {allow_overlap!r}")
    if split_mode == "random" and valid_ratio + test_ratio >= 1:
        raise ValueError(
            f"valid_ratio + test_ratio must be below 1, got {valid_ratio + test_ratio}"
        )
    return {
        "split_mode": split_mode,
        "num_folds": num_folds,
        "test_fold": test_fold if split_mode == "speaker_kfold" else None,
        "valid_ratio": valid_ratio,
        "test_ratio": test_ratio if split_mode == "random" else None,
        "valid_split": valid_split,
        "seed": seed,
        "emotions": parse_class_list(emotions),
        "label_map": parse_label_map(label_map),
        "test_label_map": parse_label_map(test_label_map, "test_label_map"),
        "allow_overlap": allow_overlap,
    }


def corpus_classes(csv_file, label_map=None, emotions=None):
    """The classes a run on ``csv_file`` trains: ``emotions`` or all, sorted.

    Reads only the CSV's ``emotion`` column (no audio): the recipe calls it
    before the model is built, to size the classifier.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/c.csv"
    >>> _ = open(path, "w").write("wav,emotion\\na,sad\\nb,exc\\nc,ang\\n")
    >>> corpus_classes(path, label_map={"exc": "hap"})
    ['ang', 'hap', 'sad']
    >>> corpus_classes(path, emotions=["sad", "fru"])
    Traceback (most recent call last):
    ...
    sser_lobes.errors.CorpusError: ...c.csv: class fru of emotions has no row ...
    """
    columns, rows = read_table(csv_file)
    require_columns(csv_file, columns, ("wav", "emotion"))
    label_map = label_map or {}
    found = Counter(
        label_map.get(values["emotion"], values["emotion"])
        for _, values, _ in rows
        if values is not None and values.get("emotion")
    )
    if not emotions:
        if not found:
            raise CorpusError(f"{csv_file}: no row has an emotion")
        return sorted(found)
    missing = [c for c in emotions if c not in found]
    if missing:
        raise CorpusError(
            f"{csv_file}: class {', '.join(missing)} of emotions has no row "
            f"(classes in the file: {', '.join(sorted(found)) or 'none'})"
        )
    return list(emotions)


def require_speakers(csv_file, columns):
    """One line when ``speaker_kfold`` meets a file without speakers.

    Example
    -------
    >>> require_speakers("c.csv", ["wav", "emotion"])
    Traceback (most recent call last):
    ...
    sser_lobes.errors.CorpusError: c.csv: no speaker column ...--split_mode=random...
    """
    if "speaker" not in columns:
        raise CorpusError(
            f"{csv_file}: no speaker column (found: {', '.join(columns)}); "
            "split_mode=speaker_kfold, the default, keeps each speaker in one "
            "fold. For a corpus without speakers use --split_mode=random "
            "(speaker-DEPENDENT) or --split_mode=given (a split column)"
        )


def count_folds(csv_file, num_folds):
    """Number of folds of ``speaker_kfold`` on this CSV (fewer speakers: one each)."""
    columns, rows = read_table(csv_file)
    require_columns(csv_file, columns, ("wav", "emotion"))
    require_speakers(csv_file, columns)
    speakers = {
        v["speaker"].casefold()
        for _, v, _ in rows
        if v is not None and v.get("speaker")
    }  # spk01 and SPK01 are one speaker (read_corpus merges them)
    return min(num_folds, len(speakers)) if num_folds else len(speakers)


def _draw_valid(ids, records, options, rng):
    """Split the training side into (valid, train, speaker_disjoint)."""
    speakers = sorted({records[u]["speaker"] for u in ids} - {None})
    classes_of = {u: records[u]["emo"] for u in ids}
    by_speaker = len(speakers) >= 2 and options["valid_split"] == "speakers"
    if by_speaker and all(records[u]["speaker"] is not None for u in ids):
        order = list(speakers)
        rng.shuffle(order)
        wanted = options["valid_ratio"] * len(ids)
        chosen, count = [], 0
        sizes = Counter(records[u]["speaker"] for u in ids)
        for speaker in order[:-1]:  # at least one speaker stays in train
            if count >= wanted:
                break
            chosen.append(speaker)
            count += sizes[speaker]
        valid = sorted(u for u in ids if records[u]["speaker"] in chosen)
        train = sorted(u for u in ids if records[u]["speaker"] not in chosen)
        return valid, train, True
    valid, train = stratified_share(ids, classes_of, options["valid_ratio"], rng)
    return valid, train, False


def _given_train_valid(ids, records, options, rng):
    """Train and valid of the ``split`` column: ``(train, valid,
    speaker_disjoint, drawn)``; without valid rows, valid is drawn from train
    (:func:`_draw_valid`, ``drawn`` True)."""
    train = [u for u in ids if records[u]["split"] == "train"]
    valid = [u for u in ids if records[u]["split"] == "valid"]
    if valid:
        return train, valid, None, False
    valid, train, disjoint = _draw_valid(train, records, options, rng)
    return train, valid, disjoint, True


def _split(records, options, corpus_name):
    """``({split: ids}, info)`` for the options' protocol."""
    ids = sorted(records)
    rng = random.Random(options["seed"])
    mode = options["split_mode"]
    cross = options.get("test_csv") is not None
    info = {"valid_drawn_from_train": False, "folds": None}
    if cross:
        # The other corpus is the test set: train + valid are the whole CSV
        # (its own test rows left out in given mode).
        if mode == "given":
            train, valid, disjoint, drawn = _given_train_valid(
                ids, records, options, rng
            )
            info["valid_drawn_from_train"] = drawn
        else:
            valid, train, disjoint = _draw_valid(ids, records, options, rng)
        splits = {"train": train, "valid": valid, "test": []}
        description = f"train and valid on {corpus_name}, test on another corpus"
        return splits, {**info, "valid_speaker_disjoint": disjoint}, description
    if mode == "speaker_kfold":
        counts = {}
        for uid in ids:
            counts.setdefault(records[uid]["speaker"], Counter())[
                records[uid]["emo"]
            ] += 1
        if len(counts) < 2:
            raise PreparationError(
                f"split_mode=speaker_kfold needs at least 2 speakers, the corpus has "
                f"{len(counts)}; use split_mode=random (speaker-DEPENDENT) or given"
            )
        k = (
            min(options["num_folds"], len(counts))
            if options["num_folds"]
            else len(counts)
        )
        if options["test_fold"] > k:
            raise PreparationError(
                f"test_fold {options['test_fold']} but the corpus' {len(counts)} "
                f"speakers make {k} folds (test_fold 1..{k})"
            )
        classes = sorted({r["emo"] for r in records.values()})
        folds = (
            [[speaker] for speaker in sorted(counts)]
            if k == len(counts)
            else stratified_group_folds(counts, classes, k, options["seed"])
        )
        test_speakers = set(folds[options["test_fold"] - 1])
        test = [u for u in ids if records[u]["speaker"] in test_speakers]
        side = [u for u in ids if records[u]["speaker"] not in test_speakers]
        valid, train, disjoint = _draw_valid(side, records, options, rng)
        loso = k == len(counts)
        info = {
            **info,
            "folds": folds,
            "fold_counts": [
                {
                    "total": sum(sum(counts[s].values()) for s in fold),
                    **{c: sum(counts[s][c] for s in fold) for c in classes},
                }
                for fold in folds
            ],
            "num_folds": k,
            "leave_one_speaker_out": loso,
            "valid_speaker_disjoint": disjoint,
        }
        description = (
            f"{corpus_name}: speaker-independent "
            + ("leave-one-speaker-out" if loso else f"{k}-fold by speaker")
            + f", test = fold {options['test_fold']} (speakers "
            f"{', '.join(sorted(test_speakers))}); valid = "
            + (
                f"whole training-side speakers (~{options['valid_ratio'] * 100:g} %)"
                if disjoint
                else f"{options['valid_ratio'] * 100:g} % of the training speakers' "
                "utterances, stratified (not speaker-disjoint from train)"
            )
            + f", seed {options['seed']}"
        )
        return {"train": train, "valid": valid, "test": test}, info, description
    if mode == "given":
        train, valid, disjoint, drawn = _given_train_valid(ids, records, options, rng)
        test = [u for u in ids if records[u]["split"] == "test"]
        description = f"{corpus_name}: the CSV's split column" + (
            " (valid drawn from train)" if drawn else ""
        )
        info["valid_drawn_from_train"] = drawn
        info["valid_speaker_disjoint"] = disjoint
        return {"train": train, "valid": valid, "test": test}, info, description
    classes_of = {u: records[u]["emo"] for u in ids}
    test, rest = stratified_share(ids, classes_of, options["test_ratio"], rng)
    share = options["valid_ratio"] / (1 - options["test_ratio"])
    valid, train = stratified_share(rest, classes_of, share, rng)
    description = (
        f"{corpus_name}: random utterance split (test "
        f"{options['test_ratio'] * 100:g} %, valid {options['valid_ratio'] * 100:g} "
        f"%, stratified, seed {options['seed']}): speaker-DEPENDENT, the same "
        "speakers are in train, valid and test"
    )
    return (
        {"train": train, "valid": valid, "test": test},
        {**info, "valid_speaker_disjoint": False},
        description,
    )


def _test_overlap(rows, test_rows, splits, num_workers, names):
    """What the test split shares with train + valid: ``{"files": [...],
    "speakers": [...]}``.

    ``files``: the test utterances whose audio (file and segment,
    :func:`~sser_lobes.dataio.corpus_csv.audio_key`) is a training-side
    utterance's, as ``"<test file>, line <n> = <file>, line <m>"``.
    ``speakers``: the test speakers also on the training side, compared
    case-folded, when the utterances name their speakers.

    ``rows`` are the kept rows of the corpus, ``test_rows`` those of the
    cross-corpus test file (empty without one: the test split is then part
    of ``rows``); ``names`` the files they come from, ``(training, test)``.
    """
    by_id = {row.id: row for row in rows}
    if test_rows:
        test = list(test_rows)
    else:
        test = [by_id[u] for u in splits["test"]]
    training = [by_id[u] for split in ("train", "valid") for u in splits[split]]
    identities = file_identities({r.wav for r in (*training, *test)}, num_workers)
    seen = {audio_key(r, identities): r for r in training}
    files = []
    for row in test:
        other = seen.get(audio_key(row, identities))
        if other is not None:
            files.append(
                f"{names[1]}, line {row.line} is {names[0]}, line {other.line} "
                f"({row.wav})"
            )
    train_speakers = {r.speaker.casefold(): r.speaker for r in training if r.speaker}
    test_speakers = {r.speaker.casefold() for r in test if r.speaker}
    speakers = sorted(train_speakers[k] for k in test_speakers & set(train_speakers))
    if speakers:
        logger.warning(
            "%d test speaker id(s) also name training-side speakers (compared "
            "case-folded): %s; split_info.json says speaker_independent: false. If "
            "they are other people, give them other ids",
            len(speakers),
            ", ".join(speakers[:10]),
        )
    return {"files": files, "speakers": speakers}


def _keep_classes(rows, emotions, dropped, what):
    """Rows whose class is one of ``emotions``; the others counted in ``dropped``."""
    kept = []
    for row in rows:
        if row.emotion in emotions:
            kept.append(row)
        else:
            dropped[row.emotion] += 1
    if not kept:
        raise PreparationError(
            f"{what}: no row of the classes {', '.join(emotions)} is left"
        )
    return kept


def _place_no_agreement(rows, classes, records, splits, options):
    """``({split: [row]}, dropped)``: the rows without a majority label whose
    votes name one of ``classes``, in the split of their speaker; the others
    are counted in ``dropped``."""
    placed = {split: [] for split in SPLITS}
    dropped = 0
    speakers = {
        split: {records[u]["speaker"] for u in ids if u in records} - {None}
        for split, ids in splits.items()
    }
    for row in rows:
        if not vote_distribution(row.votes, classes):
            dropped += 1
            continue
        if options["split_mode"] == "given" and options.get("test_csv") is None:
            split = row.split or "train"
        elif options["split_mode"] == "random" or options.get("test_csv"):
            split = "train"
        elif row.speaker in speakers["test"]:
            split = "test"
        elif row.speaker in speakers["valid"] and row.speaker not in speakers["train"]:
            split = "valid"
        else:
            split = "train"
        placed[split].append(row)
    return placed, dropped


def _speakers_missing_classes(records, emotions):
    seen = {}
    for entry in records.values():
        if entry["speaker"] is not None:
            seen.setdefault(entry["speaker"], set()).add(entry["emo"])
    return {
        speaker: [c for c in emotions if c not in classes]
        for speaker, classes in sorted(seen.items())
        if any(c not in classes for c in emotions)
    }


def prepare_custom(
    csv_file,
    save_folder,
    split_mode="speaker_kfold",
    num_folds=5,
    test_fold=1,
    valid_ratio=0.1,
    test_ratio=0.1,
    valid_split="speakers",
    seed=1993,
    emotions=None,
    label_map=None,
    test_csv=None,
    test_label_map=None,
    num_workers=4,
    allow_overlap=False,
):
    """Prepare train / valid / test manifests of a corpus CSV for one fold.

    Arguments
    ---------
    csv_file : str or os.PathLike
        The corpus (see :mod:`sser_lobes.dataio.corpus_csv`).
    save_folder : str or os.PathLike
        Where the manifests and reports are written.
    split_mode, num_folds, test_fold, valid_ratio, test_ratio, valid_split, seed
        The protocol (module docstring).
    emotions : list of str or str, optional
        Classes to keep, in this order (default: all, sorted).
    label_map : dict or str, optional
        ``{"exc": "hap"}`` or ``"exc:hap,calm:neu"``: merges / renames.
    test_csv : str or os.PathLike, optional
        A second corpus used as the test set (cross-corpus evaluation).
    test_label_map : dict or str, optional
        Label map of ``test_csv``.
    num_workers : int
        Threads reading audio headers.
    allow_overlap : bool
        Keep test utterances whose audio is also on the training side (the
        preparation refuses them otherwise; ``split_info.json`` records
        ``file_disjoint`` and the shared files either way).

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}``.

    Example
    -------
    >>> import tempfile, json, logging
    >>> from sser_lobes.synthetic.csv_corpus import make_csv_corpus
    >>> logging.disable(logging.WARNING)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> csv_file = make_csv_corpus(tmp.name, speakers=4, per_class=2)
    >>> paths = prepare_custom(csv_file, tmp.name + "/prep", num_folds=2)
    >>> info = json.load(open(tmp.name + "/prep/split_info.json"))
    >>> info["num_folds"], info["speaker_independent"], len(info["folds"][0])
    (2, True, 2)
    >>> logging.disable(logging.NOTSET)
    >>> tmp.cleanup()
    """
    options = validate_options(
        split_mode,
        num_folds,
        test_fold,
        valid_ratio,
        test_ratio,
        valid_split,
        seed,
        emotions,
        label_map,
        test_label_map,
        allow_overlap,
    )
    csv_file = Path(os.path.abspath(os.fspath(csv_file)))
    if not csv_file.is_file():
        raise CorpusError(f"{csv_file}: corpus file not found")
    options["csv_file"] = os.fspath(csv_file)
    options["csv_sha256"] = file_sha256(csv_file)
    options["test_csv"] = None
    options["test_csv_sha256"] = None
    if test_csv is not None:
        test_csv = Path(os.path.abspath(os.fspath(test_csv)))
        if not test_csv.is_file():
            raise CorpusError(f"{test_csv}: test corpus file not found")
        options["test_csv"] = os.fspath(test_csv)
        options["test_csv_sha256"] = file_sha256(test_csv)

    save_folder = Path(os.path.abspath(os.fspath(save_folder)))
    if save_folder.exists() and not save_folder.is_dir():
        raise PreparationError(f"{save_folder}: save_folder exists and is not a folder")
    paths = {split: save_folder / f"{split}.json" for split in SPLITS}
    outputs = [
        *paths.values(),
        save_folder / SPLIT_INFO_FILE,
        save_folder / SUMMARY_FILE,
    ]
    result = {split: os.fspath(path) for split, path in paths.items()}
    if reusable(save_folder, outputs, _WRITER, _FORMAT_VERSION, options, logger):
        return result

    mode = options["split_mode"]
    need = ["wav", "emotion"]
    if mode == "speaker_kfold" and test_csv is None:
        require_speakers(csv_file, read_table(csv_file)[0])
        need.append("speaker")
    if mode == "given":
        need.append("split")
    classes = corpus_classes(csv_file, options["label_map"], options["emotions"])
    rows, report = read_corpus(
        csv_file, options["label_map"], tuple(need), num_workers=num_workers
    )
    no_agreement_rows = [row for row in rows if row.emotion is None]
    rows = [row for row in rows if row.emotion is not None]
    dropped = Counter()
    rows = _keep_classes(rows, classes, dropped, os.fspath(csv_file))
    records = {row.id: row.manifest_entry() for row in rows}
    corpus_name = csv_file.stem
    splits, info, description = _split(records, options, corpus_name)
    test_rows = []
    test_records = {}
    test_report = None
    test_dropped = Counter()
    if test_csv is not None:
        test_rows, test_report = read_corpus(
            test_csv,
            options["test_label_map"],
            ("wav", "emotion"),
            num_workers=num_workers,
        )
        test_rows = [row for row in test_rows if row.emotion is not None]
        test_rows = _keep_classes(test_rows, classes, test_dropped, os.fspath(test_csv))
        test_records = {row.id: row.manifest_entry() for row in test_rows}
        splits["test"] = sorted(test_records)
        description += f" ({test_csv.stem})"
    for name, ids in splits.items():
        if not ids:
            raise PreparationError(
                f"the {name} split is empty ({description}); {csv_file} has "
                f"{len(records)} usable rows of the classes {', '.join(classes)}"
            )
    sources = {
        split: test_records if (split == "test" and test_csv is not None) else records
        for split in splits
    }
    entries = {split: [sources[split][u] for u in ids] for split, ids in splits.items()}
    absent = absent_classes(
        {(split, u): sources[split][u] for split, ids in splits.items() for u in ids},
        {split: [(split, u) for u in ids] for split, ids in splits.items()},
        classes,
        description,
    )
    overlap = _test_overlap(
        rows,
        test_rows,
        splits,
        num_workers,
        (csv_file, test_csv if test_csv is not None else csv_file),
    )
    if overlap["files"] and not options["allow_overlap"]:
        example = overlap["files"][0]
        raise PreparationError(
            f"{len(overlap['files'])} test utterance(s) are audio of the training "
            f"side, e.g. {example}; a test set must not hold training audio. "
            "Remove them, or pass --allow_overlap=True to keep them (split_info.json "
            "then says file_disjoint: false)"
        )
    if overlap["files"]:
        logger.warning(
            "--allow_overlap: %d test utterance(s) are audio of the training side, "
            "e.g. %s",
            len(overlap["files"]),
            overlap["files"][0],
        )

    placed, no_agreement_dropped = _place_no_agreement(
        no_agreement_rows, classes, records, splits, options
    )

    save_folder.mkdir(parents=True, exist_ok=True)
    write_state(save_folder, _WRITER, _FORMAT_VERSION, options, complete=False)
    for split, ids in splits.items():
        manifest = {u: sources[split][u] for u in ids}
        manifest.update({row.id: row.manifest_entry() for row in placed[split]})
        atomic_write_json(paths[split], dict(sorted(manifest.items())))

    speakers = {
        split: sorted({e["speaker"] for e in members} - {None})
        for split, members in entries.items()
    }
    has_speakers = all(
        e["speaker"] is not None for members in entries.values() for e in members
    )
    if mode == "random" and test_csv is None:
        independent = False
    elif has_speakers:
        # Speaker ids compare case-folded (read_corpus merged them per file).
        independent = not overlap["speakers"]
    else:
        independent = None  # unknown: some utterance has no speaker
    split_info = {
        "corpus": corpus_name,
        "csv_file": options["csv_file"],
        "csv_sha256": options["csv_sha256"],
        "split_mode": mode,
        "protocol": f"{corpus_name} {mode}"
        + (f" -> {test_csv.stem}" if test_csv is not None else ""),
        "split_description": description,
        "speaker_independent": independent,
        "file_disjoint": not overlap["files"],
        **info,
        "test_fold": options["test_fold"] if test_csv is None else None,
        "seed": options["seed"],
        "valid_ratio": options["valid_ratio"],
        "test_ratio": options["test_ratio"],
        "emotions": classes,
        "label_map": options["label_map"],
        "test_corpus": None
        if test_csv is None
        else {
            "corpus": test_csv.stem,
            "csv_file": options["test_csv"],
            "csv_sha256": options["test_csv_sha256"],
            "label_map": options["test_label_map"],
        },
        "counts": {
            split: {
                "total": len(members),
                **{c: sum(e["emo"] == c for e in members) for c in classes},
            }
            for split, members in entries.items()
        },
        "speakers": speakers,
        "no_agreement": {split: len(members) for split, members in placed.items()},
    }
    if overlap["files"]:
        split_info["test_files_in_training"] = overlap["files"]
    if overlap["speakers"]:
        split_info["test_speakers_in_training"] = overlap["speakers"]
    if absent:
        split_info["absent_classes"] = absent
    if mode == "random" and test_csv is None:
        split_info["warning"] = (
            "speaker-DEPENDENT split: test speakers are also in train; do not "
            "compare with speaker-independent results"
        )
    missing_classes = _speakers_missing_classes(records, classes)
    summary = {
        "csv_file": options["csv_file"],
        "rows_kept": len(records),
        "skipped": report.summary(),
        "dropped_classes": dict(sorted(dropped.items())),
        "speakers_missing_classes": missing_classes,
        "merged_speaker_spellings": report.notes.get("merged_speaker_spellings", {}),
        "votes": {
            "rows_with_votes": sum(bool(row.votes) for row in rows),
            "rows_with_unreadable_votes": len(report.notes.get("bad_votes", [])),
            "unreadable_examples": report.notes.get("bad_votes", [])[:20],
            "no_agreement_kept": sum(len(m) for m in placed.values()),
            "no_agreement_without_votes_in_classes": no_agreement_dropped,
        },
    }
    if test_csv is not None:
        summary["test_csv"] = {
            "csv_file": options["test_csv"],
            "rows_kept": len(test_records),
            "skipped": test_report.summary(),
            "dropped_classes": dict(sorted(test_dropped.items())),
            "merged_speaker_spellings": test_report.notes.get(
                "merged_speaker_spellings", {}
            ),
        }
    atomic_write_json(save_folder / SPLIT_INFO_FILE, split_info)
    atomic_write_json(save_folder / SUMMARY_FILE, summary)
    write_state(save_folder, _WRITER, _FORMAT_VERSION, options, complete=True)

    log_summary(report.summary(), save_folder / SUMMARY_FILE, logger)
    if test_report is not None:
        log_summary(test_report.summary(), save_folder / SUMMARY_FILE, logger)
    for what, counter in (("", dropped), ("test corpus: ", test_dropped)):
        if counter:
            logger.info(
                "%sdropped %d row(s) of classes outside %s: %s",
                what,
                sum(counter.values()),
                ", ".join(classes),
                ", ".join(f"{c} {n}" for c, n in sorted(counter.items())),
            )
    if missing_classes:
        logger.warning(
            "%d speaker(s) have no utterance of some class (folds cannot be fully "
            "stratified), e.g. %s",
            len(missing_classes),
            "; ".join(
                f"{s}: no {', '.join(c)}" for s, c in list(missing_classes.items())[:5]
            ),
        )
    if mode == "random" and test_csv is None:
        logger.warning(
            "split_mode=random is speaker-DEPENDENT: the same speakers are in "
            "train, valid and test"
        )
    logger.info(
        "%s: wrote %s (%s)",
        save_folder,
        ", ".join(f"{s} {len(ids)}" for s, ids in splits.items()),
        description,
    )
    return result


def main(argv=None):
    """Command line; returns the exit status (0 ok, 1 error).

    Example
    -------
    >>> import contextlib, io, tempfile
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     main(["--csv_file", "/no.csv", "--save_folder", tempfile.mkdtemp()])
    1
    >>> err.getvalue().strip()
    'error: /no.csv: corpus file not found'
    """
    parser = argparse.ArgumentParser(
        description="Prepare train/valid/test manifests of a labelled speech "
        "corpus described by a CSV file."
    )
    parser.add_argument("--csv_file", required=True)
    parser.add_argument("--save_folder", help="where the manifests are written")
    parser.add_argument("--split_mode", choices=SPLIT_MODES, default="speaker_kfold")
    parser.add_argument("--num_folds", type=int, default=5)
    parser.add_argument("--test_fold", type=int, default=1)
    parser.add_argument("--valid_ratio", type=float, default=0.1)
    parser.add_argument("--test_ratio", type=float, default=0.1)
    parser.add_argument("--valid_split", choices=VALID_SPLITS, default="speakers")
    parser.add_argument("--seed", type=int, default=1993)
    parser.add_argument("--emotions", help="classes to keep, e.g. neu,hap,sad,ang")
    parser.add_argument("--label_map", help="e.g. exc:hap,calm:neu")
    parser.add_argument("--test_csv", help="another corpus as the test set")
    parser.add_argument("--test_label_map", help="label map of --test_csv")
    parser.add_argument(
        "--allow_overlap",
        action="store_true",
        help="keep test utterances whose audio is also in training",
    )
    parser.add_argument(
        "--print_num_folds",
        action="store_true",
        help="only print the number of speaker_kfold folds of the CSV",
    )
    args = parser.parse_args(argv)
    if args.print_num_folds:
        try:
            print(count_folds(args.csv_file, args.num_folds))
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if not args.save_folder:
        parser.error("--save_folder is required")
    return run_preparation_cli(
        prepare_custom,
        args.csv_file,
        args.save_folder,
        split_mode=args.split_mode,
        num_folds=args.num_folds,
        test_fold=args.test_fold,
        valid_ratio=args.valid_ratio,
        test_ratio=args.test_ratio,
        valid_split=args.valid_split,
        seed=args.seed,
        emotions=args.emotions,
        label_map=args.label_map,
        test_csv=args.test_csv,
        test_label_map=args.test_label_map,
        allow_overlap=args.allow_overlap,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    sys.exit(main())
