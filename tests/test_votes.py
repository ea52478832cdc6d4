"""Annotator votes: the synthetic corpora write the real vote files with known
distributions, and every preparation reads them exactly; a missing or
malformed vote file is one warning and hard labels.

IEMOCAP: the ``C-E*`` lines of ``EmoEvaluation/*.txt`` (the speakers' own
``C-F1`` / ``C-M1`` lines are not votes); MSP-Podcast:
``Labels/labels_detailed.csv`` (v1.11 ``FileName,EmoDetail`` and the older
column layout); CREMA-D: ``processedResults/tabulatedVotes.csv`` (voice-only
rows) through ``prepare_corpus.py cremad`` and the Custom preparation; the
Custom CSV's ``votes`` / ``votes_<class>`` columns.
"""

import csv
import json
import logging
import shutil

import pytest

from sser_lobes.dataio.votes import (
    clean_votes,
    majority_kind,
    parse_votes_text,
    vote_distribution,
)

IEMOCAP_CLASSES = ["neu", "hap", "sad", "ang"]
MSP_CLASSES = list("ASHUFDCN")


def _manifests(paths):
    return {
        split: json.loads(open(path, encoding="utf-8").read())
        for split, path in paths.items()
    }


def _assert_distributions(manifests, expected, classes):
    checked = 0
    for entries in manifests.values():
        for utt, entry in entries.items():
            got = vote_distribution(entry["votes"], classes)
            want = expected[utt]
            if want is None:
                assert got is None, utt
            else:
                assert got == pytest.approx(want, abs=1e-12), utt
            checked += 1
    return checked


def test_votes_text_and_distribution():
    assert parse_votes_text("neu:3, ang:1,exc:2", {"exc": "hap"}) == {
        "ang": 1.0,
        "hap": 2.0,
        "neu": 3.0,
    }
    assert parse_votes_text("  ") is None
    for bad in ("neu", "neu:x", "neu:1,neu:2", ":3"):
        with pytest.raises(ValueError):
            parse_votes_text(bad)
    with pytest.raises(ValueError, match="finite number"):
        clean_votes({"neu": float("nan")})
    assert vote_distribution({"A": 3, "O": 1}, ["A", "S"]) == [1.0, 0.0]
    assert majority_kind([0.5, 0.5]) == "ambiguous"


def test_iemocap_preparation_reads_the_evaluators_votes(iemocap_small_corpus, tmp_path):
    """Every utterance's distribution is the generator's plan (self-evaluations
    left out, exc counted as hap); the xxx / oth utterances with votes in the
    four classes are kept without a label, on their speaker's side."""
    from iemocap_prepare import prepare_iemocap

    from sser_lobes.synthetic.iemocap import plan_corpus, vote_distributions

    plan = plan_corpus(utterances_per_speaker=4, seed=0)
    expected = vote_distributions(plan)
    manifests = _manifests(
        prepare_iemocap(iemocap_small_corpus, tmp_path / "prep", test_session=3)
    )
    assert _assert_distributions(manifests, expected, IEMOCAP_CLASSES) == 43
    codes = {u.utt_id: u for u in plan}
    unlabelled = {
        utt: split
        for split, entries in manifests.items()
        for utt, entry in entries.items()
        if entry["emo"] is None
    }
    assert {codes[u].code for u in unlabelled} == {"xxx", "oth"}
    for utt, split in unlabelled.items():
        assert split == ("test" if codes[utt].session == 3 else "train"), utt
    info = json.loads((tmp_path / "prep" / "split_info.json").read_text())
    assert info["votes"]["labelled_with_votes"] == 40
    assert info["counts"]["test"]["total"] == 8  # labelled only
    assert sum(info["no_agreement"].values()) == len(unlabelled)


def test_iemocap_unreadable_votes_fall_back_to_labels(
    iemocap_small_corpus, tmp_path, caplog
):
    from iemocap_prepare import prepare_iemocap

    root = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(iemocap_small_corpus, root)
    emo = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    lines = emo.read_text().splitlines()
    broken = [
        line.split("\t")[0] + "\t\t()" if line.startswith("C-E") else line
        for line in lines
    ]
    emo.write_text("\n".join(broken) + "\n")
    with caplog.at_level(logging.WARNING):
        manifests = _manifests(prepare_iemocap(root, tmp_path / "prep"))
    warnings = [
        r.getMessage() for r in caplog.records if "evaluator line" in r.getMessage()
    ]
    assert len(warnings) == 1 and "cannot be read" in warnings[0]
    entries = {u: e for m in manifests.values() for u, e in m.items()}
    in_file = [u for u in entries if u.startswith("Ses01F_impro01_")]
    assert in_file and all(entries[u]["votes"] is None for u in in_file)
    assert all(entries[u]["emo"] is not None for u in in_file)
    # A changed label file is a changed preparation key: the manifests rebuild.
    assert any(e["votes"] for e in entries.values())


@pytest.mark.parametrize("layout", ["emodetail", "columns"])
def test_msp_preparation_reads_labels_detailed(tmp_path, layout):
    from msp_podcast_prepare import prepare_msp_podcast

    from sser_lobes.synthetic.msp_podcast import (
        DETAILED_COLUMNS_HEADER,
        DETAILED_HEADER,
        make_msp_podcast_corpus,
        plan_corpus,
        vote_distributions,
    )

    root = make_msp_podcast_corpus(
        tmp_path,
        utterances_per_class=1,
        seed=3,
        test3_utterances=2,
        detailed_format=layout,
    )
    header = (root / "Labels" / "labels_detailed.csv").read_text().splitlines()[0]
    assert header == (
        DETAILED_HEADER if layout == "emodetail" else DETAILED_COLUMNS_HEADER
    )
    plan = plan_corpus(utterances_per_class=1, seed=3, test3_utterances=2)
    expected = vote_distributions(plan, MSP_CLASSES)
    manifests = _manifests(prepare_msp_podcast(root, tmp_path / "prep"))
    test3 = manifests.pop("Test3")
    assert all(e["votes"] is None for e in test3.values())
    assert _assert_distributions(manifests, expected, MSP_CLASSES) == len(expected)
    # O and X rows keep their distribution (over the 8 classes and O).
    o_rows = [e for m in manifests.values() for e in m.values() if e["emo"] is None]
    assert o_rows and all(e["votes"] for e in o_rows)
    assert any(e["votes"].get("O") for e in o_rows)
    summary = json.loads((tmp_path / "prep" / "prep_summary.json").read_text())
    assert summary["votes"]["labelled_without_votes"] == 0


def test_msp_missing_or_malformed_votes_file(tmp_path, caplog):
    from msp_podcast_prepare import prepare_msp_podcast

    from sser_lobes.synthetic.msp_podcast import make_msp_podcast_corpus

    root = make_msp_podcast_corpus(tmp_path, utterances_per_class=1, seed=4)
    detailed = root / "Labels" / "labels_detailed.csv"
    for case, content in (
        ("malformed", "FileName,Votes\na.wav,N\n"),
        ("missing", None),
    ):
        if content is None:
            detailed.unlink()
        else:
            detailed.write_text(content)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            paths = prepare_msp_podcast(root, tmp_path / f"prep_{case}")
        messages = [r.getMessage() for r in caplog.records]
        about = [m for m in messages if "labels_detailed.csv" in m]
        assert len(about) == 1 and "\n" not in about[0], messages
        manifests = _manifests(paths)
        assert all(e["votes"] is None for m in manifests.values() for e in m.values())


def test_cremad_votes_through_prepare_corpus_and_custom(tmp_path, caplog):
    """tabulatedVotes.csv has the release's header and its voice, face and
    audio-visual blocks; the voice votes reach the Custom manifests."""
    from custom_prepare import prepare_custom
    from prepare_corpus import prepare_cremad

    from sser_lobes.synthetic.public_corpora import (
        cremad_votes,
        make_cremad,
        plan_cremad,
    )

    actors = [1001, 1002, 1003, 1004]
    root = make_cremad(tmp_path, actors=actors, per_class=2)
    table = root / "processedResults" / "tabulatedVotes.csv"
    with open(table, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:11] == [
        "",
        "A",
        "D",
        "F",
        "H",
        "N",
        "S",
        "fileName",
        "numResponses",
        "agreement",
        "emoVote",
    ]
    assert len(rows[0]) == 27
    assert {r[0][0] for r in rows[1:]} == {"1", "2", "3"}
    summary = prepare_cremad(root, tmp_path / "cremad.csv")
    assert summary["votes"]["clips_with_votes"] == summary["total"]
    paths = prepare_custom(tmp_path / "cremad.csv", tmp_path / "prep", num_folds=2)
    expected = cremad_votes(plan_cremad(actors=actors, per_class=2))
    for entries in _manifests(paths).values():
        for utt, entry in entries.items():
            assert entry["votes"] == {k: float(v) for k, v in expected[utt].items()}
    table.unlink()
    with caplog.at_level(logging.WARNING):
        summary = prepare_cremad(root, tmp_path / "novotes.csv")
    assert any(
        "tabulatedVotes.csv: not found" in r.getMessage() for r in caplog.records
    )
    assert summary["votes"]["clips_with_votes"] == 0


def test_custom_csv_vote_columns(tmp_path, caplog):
    """``votes_<class>`` columns through the label map; a row with votes and
    no label is kept for its votes on its speaker's side; a row with
    unreadable votes keeps its label, with one warning for all."""
    from custom_prepare import prepare_custom

    from sser_lobes.synthetic.csv_corpus import make_csv_corpus

    corpus = make_csv_corpus(tmp_path, speakers=4, per_class=2)
    with open(corpus, newline="") as handle:
        rows = list(csv.DictReader(handle))
    classes = sorted({r["emotion"] for r in rows})
    columns = [*rows[0], *(f"votes_{c}" for c in classes)]
    for i, row in enumerate(rows):
        for c in classes:
            row[f"votes_{c}"] = "2" if c == row["emotion"] else ("1" if i % 2 else "")
    rows[0][f"votes_{classes[0]}"] = "many"  # unreadable
    unlabelled = rows[1]
    unlabelled["emotion"] = ""
    for c in classes:
        unlabelled[f"votes_{c}"] = "1" if c in classes[:2] else ""
    no_majority = unlabelled["wav"][: -len(".wav")]
    path = tmp_path / "votes.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    with caplog.at_level(logging.WARNING):
        paths = prepare_custom(path, tmp_path / "prep", num_folds=2)
    warned = [
        r.getMessage() for r in caplog.records if "unreadable votes" in r.getMessage()
    ]
    assert len(warned) == 1 and "line 2" in warned[0]
    entries = {u: (s, e) for s, m in _manifests(paths).items() for u, e in m.items()}
    first = next(u for u, (_, e) in entries.items() if e["line"] == 2)
    assert entries[first][1]["votes"] is None and entries[first][1]["emo"]
    split, entry = entries[no_majority]
    assert entry["emo"] is None and entry["votes"] == {classes[0]: 1.0, classes[1]: 1.0}
    same_speaker = {s for s, e in entries.values() if e["speaker"] == entry["speaker"]}
    assert split in same_speaker
    some = next(e for _, e in entries.values() if e["line"] == 4)
    assert some["votes"][some["emo"]] == 2.0
