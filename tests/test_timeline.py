"""Emotion over time (issue 20): block reading, VAD, windows, smoothing,
segments, formats, streaming equals offline, flat memory, the evaluation.

The model is the session fixture ``exported`` (a trained tiny wav2vec2,
IEMOCAP's 4 classes). Recordings are generated here: harmonic voices with
silences (the energy VAD finds them) and formant voices (silero finds them).
"""

import io
import json
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from sser_lobes.dataio.audio import load_audio_any, resample
from sser_lobes.dataio.chunking import chunk_bounds
from sser_lobes.dataio.segments import (
    RegionLabeler,
    RegionWindows,
    Segment,
    SegmentBuilder,
    smooth,
)
from sser_lobes.dataio.stream import FileBlocks, StreamResampler, open_stream
from sser_lobes.dataio.timeline_files import (
    FORMATS,
    SUFFIXES,
    Span,
    read_segments,
    write_segments,
)
from sser_lobes.dataio.vad import EnergyVAD, NoVAD, SileroVAD, SpeechRegions
from sser_lobes.evaluation import timeline_eval
from sser_lobes.inference import predict
from sser_lobes.inference.recognizer import EmotionRecognizer
from sser_lobes.inference.timeline import TimelineOptions, TimelineStream
from sser_lobes.synthetic.csv_corpus import make_csv_corpus, voice
from sser_lobes.synthetic.formant_voice import formant_voice
from sser_lobes.synthetic.long_recording import make_long_recording

BIN = Path(sys.executable).parent
CLASSES = ["neu", "hap", "sad", "ang"]


def _recording(rng, sample_rate, parts, make=voice):
    """``parts``: [(silence s, emotion, speech s), ...] -> signal, truth."""
    pieces, truth, at = [], [], 0
    for gap, emotion, seconds in parts:
        pieces.append(np.zeros(int(gap * sample_rate)))
        at += len(pieces[-1])
        wav = make(emotion, seconds, sample_rate, rng)
        if make is formant_voice:  # silero misses the quiet "sad" level
            wav = 0.3 * wav / np.abs(wav).max()
        pieces.append(wav)
        truth.append((at / sample_rate, (at + len(wav)) / sample_rate, emotion))
        at += len(wav)
    pieces.append(np.zeros(int(0.8 * sample_rate)))
    return np.concatenate(pieces), truth


PARTS = [(0.7, "ang", 2.6), (1.2, "sad", 4.1), (0.9, "hap", 1.8), (1.5, "neu", 5.0)]
#: The quiet synthetic "sad" voice dips to about -50 dBFS between syllables.
LEVEL = -55.0
ENERGY = {"vad": "energy", "energy_threshold_db": LEVEL}
ENERGY_ARGS = ["--vad", "energy", "--energy-threshold", str(LEVEL)]


@pytest.fixture(scope="module")
def recognizer(exported):
    return EmotionRecognizer.from_hparams(exported[1])


@pytest.fixture(scope="module")
def stereo_file(tmp_path_factory):
    """A 44.1 kHz stereo recording of four utterances with silences."""
    signal, truth = _recording(np.random.default_rng(3), 44100, PARTS)
    path = tmp_path_factory.mktemp("timeline") / "talk.wav"
    soundfile.write(path, np.stack([signal, 0.7 * signal], axis=1), 44100)
    return path, truth


def _rows(segments):
    return [(round(s.start, 3), round(s.end, 3), s.label) for s in segments]


# ------------------------------------------------------------------ reading
@pytest.mark.parametrize("rates", [(44100, 16000), (48000, 16000), (8000, 16000)])
def test_streamed_resampling_equals_the_whole_signal(rates):
    signal = np.random.default_rng(0).standard_normal(rates[0] * 2 + 13)
    signal = signal.astype(np.float32)
    whole = resample(torch.from_numpy(signal), *rates)
    for block in (97, 441, 9999):
        stream = StreamResampler(*rates)
        pieces = [
            stream.push(signal[i : i + block]) for i in range(0, len(signal), block)
        ]
        joined = torch.cat(pieces + [stream.flush()])
        assert joined.shape == whole.shape
        assert float((joined - whole).abs().max()) < 1e-5
        assert stream.held_samples < block + 2000  # context, not the signal


def test_file_blocks_equal_the_whole_file(stereo_file):
    path, _ = stereo_file
    blocks = FileBlocks(path, 16000, block_seconds=0.7)
    streamed = torch.cat(list(blocks))
    whole = load_audio_any(path, 16000)
    assert streamed.shape == whole.shape
    assert float((streamed - whole).abs().max()) < 1e-5


def test_wav_and_raw_streams(tmp_path):
    tone = (np.sin(np.arange(24000) / 7) * 9000).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(tone.tobytes())
    from_wav = torch.cat(list(open_stream(io.BytesIO(buffer.getvalue()), 16000)))
    raw = open_stream(io.BytesIO(tone.tobytes()[:-1]), 16000, source_rate=8000)
    from_raw = torch.cat(list(raw))  # the stream stops inside the last frame
    assert raw.truncated_bytes == 1
    expected = resample(torch.from_numpy(tone / 32768.0).float(), 8000, 16000)
    assert from_wav.shape == expected.shape
    assert float((from_wav - expected).abs().max()) < 1e-5
    assert len(from_raw) == len(resample(torch.zeros(23999), 8000, 16000))


# ---------------------------------------------------------------------- VAD
def _regions(vad, signal, sample_rate, block, **options):
    regions = SpeechRegions(vad.frame_samples, sample_rate, **options)
    events = []
    for first in range(0, len(signal), block):
        events += regions.push(vad.push(signal[first : first + block]))
    events += regions.push(vad.flush())
    events += regions.finish(len(signal))
    starts = [s for kind, s in events if kind == "start"]
    ends = [s for kind, s in events if kind == "end"]
    return [(s / sample_rate, e / sample_rate) for s, e in zip(starts, ends)]


def test_energy_vad_finds_the_utterances_whatever_the_blocks():
    signal, truth = _recording(np.random.default_rng(1), 16000, PARTS)
    found = _regions(EnergyVAD(16000, LEVEL), signal, 16000, len(signal), pad=0.0)
    assert len(found) == len(truth)
    for (start, end), (t_start, t_end, _) in zip(found, truth):
        assert abs(start - t_start) < 0.1 and abs(end - t_end) < 0.35
    for block in (333, 512, 5000):
        assert _regions(EnergyVAD(16000, LEVEL), signal, 16000, block, pad=0.0) == found


def test_silero_vad_finds_speech_and_ignores_silence_and_noise():
    rng = np.random.default_rng(2)
    signal, truth = _recording(rng, 16000, PARTS, make=formant_voice)
    signal = signal + 0.003 * rng.standard_normal(len(signal))  # room noise
    found = _regions(SileroVAD(16000), signal.astype(np.float32), 16000, 4000)
    assert len(found) == len(truth)
    for (start, end), (t_start, t_end, _) in zip(found, truth):
        assert t_start - 0.3 < start < t_start + 0.3
        assert t_end - 0.5 < end < t_end + 0.4
    noise = (0.003 * rng.standard_normal(16000 * 5)).astype(np.float32)
    assert _regions(SileroVAD(16000), noise, 16000, 4000) == []


def test_default_silero_timeline_of_speech_like_voices(recognizer, tmp_path, capsys):
    rng = np.random.default_rng(5)
    signal, truth = _recording(rng, 16000, PARTS[:2], make=formant_voice)
    path = tmp_path / "voices.wav"
    soundfile.write(path, signal, 16000)
    timeline = recognizer.timeline(path)  # silero
    speech = [s for s in timeline.segments if s.is_speech]
    assert speech and timeline.options.vad == "silero"
    for start, end, _ in truth:
        assert any(s.start <= (start + end) / 2 < s.end for s in speech)
    reference = tmp_path / "voices.ref.csv"
    write_segments(
        [Segment(a, b, label) for a, b, label in truth], reference, "csv", CLASSES
    )
    png = tmp_path / "voices.png"
    status, _, _ = _predict(
        capsys,
        "--model",
        recognizer.hparams.folder,
        "--timeline",
        path,
        "--plot",
        png,
        "--plot-reference",
        reference,
    )
    assert status == 0 and png.stat().st_size > 10000


def test_vad_off_is_one_region_and_options_are_checked():
    signal = np.zeros(16000 * 3, dtype=np.float32)
    assert _regions(NoVAD(16000), signal, 16000, 1000) == [(0.0, 3.0)]
    with pytest.raises(ValueError, match="at most half the minimum silence"):
        SpeechRegions(512, 16000, min_silence=0.1, pad=0.2)


# ------------------------------------------------------------ segment logic
def test_windows_are_chunk_bounds_of_the_region_however_they_arrive():
    rng = np.random.default_rng(0)
    for length in [3, 4, 5, 9, 10, 11, 31, 64]:
        for window, hop, min_tail in [(4, 2, None), (4, 4, None), (5, 3, 2), (4, 4, 2)]:
            windows = RegionWindows(window, hop, min_tail)
            windows.begin(100)
            got = []
            through = 100
            while through < 100 + length:
                through = min(100 + length, through + int(rng.integers(1, 4)))
                got += windows.ready(through)
            got += windows.end(100 + length)
            expected = [
                (100 + s, 100 + e)
                for s, e in chunk_bounds(length, window, hop, min_tail)
            ]
            assert got == expected, (length, window, hop)


def test_median_smoothing_removes_a_one_window_spike():
    rows = np.array([[0.8, 0.2]] * 3 + [[0.1, 0.9]] + [[0.8, 0.2]] * 3)
    assert smooth(rows, "median", 3).argmax(1).tolist() == [0] * 7
    assert smooth(rows, "none", 3).argmax(1).tolist() == [0, 0, 0, 1, 0, 0, 0]
    mean = smooth(rows, "mean", 3)
    assert np.allclose(mean.sum(1), 1) and mean[3, 0] == pytest.approx(1.7 / 3)


def test_short_runs_join_the_segment_before_and_equal_labels_merge():
    builder = SegmentBuilder(min_length=10)
    p = np.array([1.0])
    spans = [
        (0, 3, "b"),  # short first run: joins the first long one
        (3, 20, "a"),
        (20, 25, "c"),  # short: becomes "a"
        (25, 30, "a"),
        (30, 45, "b"),
        (45, 50, "b"),
    ]
    out = [s for a, b, label in spans for s in builder.add(a, b, label, p)]
    out += builder.end()
    assert [(s, e, label) for s, e, label, _ in out] == [(0, 30, "a"), (30, 50, "b")]


def test_uncertain_label_below_the_threshold():
    labeler = RegionLabeler(CLASSES[:2], "none", 1, min_length=0, uncertain_below=0.6)
    labeler.begin(0)
    decided = labeler.add((0, 10), [0.55, 0.45]) + labeler.add((10, 20), [0.1, 0.9])
    decided += labeler.end(20)
    assert [label for _, _, label, _ in decided] == ["uncertain", "hap"]


# ----------------------------------------------------------------- timeline
def test_file_timeline_labels_speech_and_silence(recognizer, stereo_file):
    path, truth = stereo_file
    timeline = recognizer.timeline(path, **ENERGY)
    segments = timeline.segments
    assert timeline.duration == pytest.approx(soundfile.info(str(path)).duration)
    assert segments[0].start == 0 and segments[-1].end == pytest.approx(
        timeline.duration, abs=1e-3
    )
    for before, after in zip(segments, segments[1:]):
        assert after.start == pytest.approx(before.end, abs=1e-6)  # no gap
    speech = [s for s in segments if s.is_speech]
    assert {s.label for s in speech} <= set(CLASSES)
    assert all(s.probabilities and s.vad > 0.3 for s in speech)
    assert all(
        s.probabilities is None and s.vad < 0.3 for s in segments if not s.is_speech
    )
    for start, end, _ in truth:  # every utterance is covered by speech
        middle = (start + end) / 2
        assert any(s.start <= middle < s.end for s in speech)
    shares = timeline.summary()["share"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert shares["silence"] > 0.2


def test_timeline_windows_go_through_predict_batch(recognizer, stereo_file):
    """The windows are classified by the recognizer's predict_batch (so a
    calibration added there applies), one window alone equals its row."""
    path, _ = stereo_file
    timeline = recognizer.timeline(path, **ENERGY, smoothing="none")
    start, end, row = timeline.windows[0]
    wav = load_audio_any(path, 16000)
    alone = recognizer.predict_batch(
        wav[int(round(start * 16000)) : int(round(end * 16000))]
    )
    assert np.allclose(alone["probabilities"][0].numpy(), row, atol=1e-4)


def _predict(capsys, *argv):
    """``sser-predict ARGV`` in this process: (status, stdout, stderr)."""
    status = predict.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_silent_empty_and_unreadable_files(recognizer, tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000 * 2), 16000)
    timeline = recognizer.timeline(silent, **ENERGY)
    assert [s.label for s in timeline.segments] == ["silence"]
    assert timeline.notes and "silent" in timeline.notes[0]
    quiet = tmp_path / "hum.wav"
    soundfile.write(quiet, 0.001 * np.sin(np.arange(32000) / 9), 16000)
    assert "no speech found" in recognizer.timeline(quiet, **ENERGY).notes[0]
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 16000)
    timeline = recognizer.timeline(empty, **ENERGY)
    assert timeline.segments == [] and "empty audio" in timeline.notes[0]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    status, stdout, stderr = _predict(
        capsys,
        "--model",
        recognizer.hparams.folder,
        "--timeline",
        broken,
        silent,
        *ENERGY_ARGS,
    )
    assert status == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.wav" in errors[0]
    assert "1 of 2 files processed" in stderr
    assert json.loads(stdout.splitlines()[0])["label"] == "silence"


def test_stream_equals_file_in_any_blocks(recognizer, stereo_file):
    path, _ = stereo_file
    offline = recognizer.timeline(path, **ENERGY, hop=1.5)
    data, rate = soundfile.read(path, dtype="float32")
    live = recognizer.stream(**ENERGY, hop=1.5, source_rate=rate)
    got = []
    mono = data.mean(axis=1)
    for first in range(0, len(mono), 4410):
        got += live.push(mono[first : first + 4410])
    got += live.finish()
    assert _rows(got) == _rows(offline.segments)
    for a, b in zip(got, offline.segments):
        if a.probabilities:
            assert (
                max(abs(a.probabilities[k] - b.probabilities[k]) for k in CLASSES)
                < 1e-4
            )


def test_memory_does_not_grow_with_the_length(recognizer, tmp_path):
    """Structural check: the audio a timeline holds is bounded by the
    window, the hop and one block, whatever the length (VAD off: one
    region as long as the file)."""
    rng = np.random.default_rng(4)
    peaks = {}
    for minutes in (0.5, 2.0):
        path = tmp_path / f"long_{minutes}.wav"
        with soundfile.SoundFile(path, "w", samplerate=44100, channels=2) as handle:
            for _ in range(int(minutes * 6)):  # 10 s blocks
                block = 0.1 * rng.standard_normal((441000, 1))
                handle.write(np.repeat(block, 2, axis=1))
        options = TimelineOptions(vad="none", window=1.0, smoothing="none")
        stream = TimelineStream(recognizer, options)
        blocks = FileBlocks(path, 16000, block_seconds=5.0)
        for block in blocks:
            stream.push(block)
        stream.finish()
        assert stream.segments[-1].end == pytest.approx(minutes * 60, abs=1e-3)
        peaks[minutes] = (stream.peak_buffered_samples, blocks.resampler.held_samples)
    assert peaks[2.0] == peaks[0.5]
    assert peaks[2.0][0] <= 16000 * (5.0 + 1.0 + 1.0) + 2000


def _stream_command(model, *extra):
    return [
        BIN / "sser-predict",
        "--model",
        model,
        "--stream",
        "-",
        *ENERGY_ARGS,
        "--stream-rate",
        "44100",
        "--stream-channels",
        "2",
        *extra,
    ]


def test_sser_predict_stream_equals_the_offline_timeline(recognizer, stereo_file):
    """``sser-predict --stream -`` fed a PCM16 pipe at full speed and at real
    time pace (a writer thread sleeping between blocks) prints the offline
    timeline's segments."""
    path, _ = stereo_file
    pcm, rate = soundfile.read(path, dtype="int16")
    offline = recognizer.timeline(path, **ENERGY)
    part = pcm[: int(4.6 * rate)]  # the real-time run: the first 4.6 s
    short = Path(path).with_name("short.wav")
    soundfile.write(short, part, rate, subtype="PCM_16")
    offline_short = recognizer.timeline(short, **ENERGY)
    for data, expected, pace in ((pcm, offline, False), (part, offline_short, True)):
        proc = subprocess.Popen(
            _stream_command(recognizer.hparams.folder),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        lines, block = [], int(0.2 * rate)
        reader = threading.Thread(target=lines.extend, args=(proc.stdout,))
        reader.start()
        for first in range(0, len(data), block):
            proc.stdin.write(data[first : first + block].tobytes())
            proc.stdin.flush()
            if pace:
                time.sleep(0.2)
        proc.stdin.close()
        reader.join(timeout=300)
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
        got = [json.loads(line) for line in lines]
        assert [(r["start"], r["end"], r["label"]) for r in got] == _rows(
            expected.segments
        )


# ------------------------------------------------------------------ formats
def test_every_format_round_trips(tmp_path):
    segments = [
        Segment(0.0, 1.25, "silence", None, 0.01),
        Segment(
            1.25, 4.0, "ang", {"neu": 0.1, "hap": 0.1, "sad": 0.1, "ang": 0.7}, 0.9
        ),
        Segment(
            4.0, 5.5, "uncertain", {"neu": 0.3, "hap": 0.3, "sad": 0.2, "ang": 0.2}
        ),
    ]
    for fmt in FORMATS:
        path = tmp_path / f"t{SUFFIXES[fmt]}"
        write_segments(segments, path, fmt, CLASSES, "rec")
        back = [(s.start, s.end, s.label) for s in read_segments(path)]
        expected = [(s.start, s.end, s.label) for s in segments]
        assert back == (expected[1:] if fmt == "rttm" else expected), fmt


def test_cli_formats_plot_summary_and_speakers(
    recognizer, stereo_file, tmp_path, capsys
):
    path, truth = stereo_file
    second = tmp_path / "copy.flac"
    soundfile.write(second, soundfile.read(path)[0], 44100)
    out = tmp_path / "out"
    status, stdout, stderr = _predict(
        capsys,
        "--model",
        recognizer.hparams.folder,
        "--timeline",
        path,
        second,
        *ENERGY_ARGS,
        "--timeline-format",
        "audacity",
        "--output",
        out,
        "--plot",
        out / "png",
    )
    assert status == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "copy.txt",
        "png",
        "summary.json",
        "talk.txt",
    ]
    assert (out / "png" / "talk.png").stat().st_size > 10000
    summaries = json.loads((out / "summary.json").read_text())
    assert [s["file"] for s in summaries] == [str(path), str(second)]
    assert "talk.wav:" in stderr and "changes" in stderr
    # speaker turns: two speakers, the segments carry them
    rttm = tmp_path / "turns.rttm"
    rttm.write_text(
        f"SPEAKER talk 1 0.000 {truth[1][1] + 0.3:.3f} <NA> <NA> A <NA> <NA>\n"
        f"SPEAKER talk 1 {truth[1][1] + 0.3:.3f} 20.000 <NA> <NA> B <NA> <NA>\n"
    )
    timeline = recognizer.timeline(
        path,
        **ENERGY,
        turns=[(0.0, truth[1][1] + 0.3, "A"), (truth[1][1] + 0.3, 99.0, "B")],
    )
    speakers = {s.speaker for s in timeline.segments if s.is_speech}
    assert speakers == {"A", "B"}
    status, stdout, stderr = _predict(
        capsys,
        "--model",
        recognizer.hparams.folder,
        "--timeline",
        path,
        *ENERGY_ARGS,
        "--speakers",
        rttm,
        "--timeline-format",
        "rttm",
    )
    assert status == 0, stderr
    names = {line.split()[5] for line in stdout.splitlines()}
    assert names == {"A", "B"}


def test_bad_options_are_one_line(recognizer, stereo_file, capsys):
    path, _ = stereo_file
    status, stdout, stderr = _predict(
        capsys,
        "--model",
        recognizer.hparams.folder,
        "--timeline",
        path,
        "--window",
        "60",
    )
    assert status == 2
    assert stderr.strip().splitlines() == [
        "error: --window 60.0 s is longer than the model's window "
        f"({recognizer.hparams.window_seconds} s)"
    ]


# --------------------------------------------------------------- evaluation
def test_eder_and_frame_metrics_on_hand_computed_cases():
    ref = [Span(0, 4, "neu"), Span(6, 10, "ang")]  # 8 s of reference emotion
    # missed 6-7 (1 s), confusion 8-10 (2 s), false alarm 4-5 (1 s)
    pred = [Span(0, 5, "neu"), Span(7, 8, "ang"), Span(8, 10, "neu")]
    scores = timeline_eval.evaluate(ref, pred, frame=0.01, tolerance=0.25)
    assert scores["missed_seconds"] == 1.0
    assert scores["false_alarm_seconds"] == 1.0
    assert scores["confusion_seconds"] == 2.0
    assert scores["eder"] == 0.5
    assert scores["frame_accuracy"] == 0.625  # 4 + 1 of 8 s
    assert scores["ua"] == pytest.approx((1.0 + 0.25) / 2)
    # boundaries: ref 4, 6 ; pred 5, 7, 8 -> none within 0.25 s
    assert scores["boundaries"]["f"] == 0.0
    perfect = timeline_eval.evaluate(ref, ref + [Span(4, 6, "silence")])
    assert perfect["eder"] == 0.0 and perfect["boundaries"]["f"] == 1.0
    uncertain = timeline_eval.evaluate(ref, [Span(0, 10, "uncertain")])
    assert uncertain["eder"] == 1.0 and uncertain["missed"] == 1.0


def test_generated_recording_and_the_eval_command(tmp_path, capsys):
    corpus = make_csv_corpus(tmp_path / "corpus", speakers=2, per_class=1)
    wav, ref = make_long_recording(
        corpus, tmp_path / "long.wav", minutes=0.5, noise_snr_db=25, seed=1
    )
    spans = read_segments(ref)
    assert soundfile.info(str(wav)).duration >= 30
    assert {s.label for s in spans} <= {"ang", "hap", "neu", "sad"}
    assert all(b.start > a.end for a, b in zip(spans, spans[1:]))  # silences
    with pytest.raises(Exception, match="never overwritten"):
        make_long_recording(corpus, wav, minutes=0.1)
    out = tmp_path / "scores.json"
    assert timeline_eval.main([str(ref), str(ref), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["eder"] == 0.0
    assert "EDER" in capsys.readouterr().out
    assert timeline_eval.main([str(ref), str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
