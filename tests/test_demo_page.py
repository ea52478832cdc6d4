"""The web page (``sser-demo``) in a real browser, and the Space files.

The browser is Debian's Chromium (``/usr/bin/chromium``; ``.ci/run``
installs it) driven by Playwright's Python package; nothing downloads a
browser. The page is started on a free localhost port with the exported
tiny model (session fixture ``exported``); the test uploads a file, reads
the label and the probabilities from the page, then uploads a long file and
reads the timeline. It saves a screenshot: ``demo_page.png`` in the test's
folder, and at ``$SSER_DEMO_SCREENSHOT`` when that is set (how
``docs/demo_page.png`` was made).
"""

import json
import os
import runpy
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from sser_lobes.errors import AudioError

CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a headless browser that contacts nothing by itself.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def recognizer(exported):
    from sser_lobes.inference.recognizer import EmotionRecognizer

    return EmotionRecognizer.from_hparams(str(exported[1]))


@pytest.fixture(scope="module")
def audio(exported, recognizer, tmp_path_factory):
    """A test file of the run, and a file three windows long."""
    manifest = json.loads((exported[0] / "manifests" / "test.json").read_text())
    paths = [manifest[u]["wav"] for u in sorted(manifest)]
    root = tmp_path_factory.mktemp("demo_audio")
    short = root / "utterance.wav"
    shutil.copy(paths[0], short)
    pieces, seconds = [], 0.0
    window = float(recognizer.hparams.window_seconds)
    for path in paths * 20:
        piece = soundfile.read(path, dtype="float32")[0]
        pieces.append(piece)
        seconds += len(piece) / 16000
        if seconds > 3 * window:
            break
    long = root / "conversation.wav"
    soundfile.write(long, np.concatenate(pieces), 16000)
    return short, long


def test_analyse_gives_the_recognizer_numbers(recognizer, audio, tmp_path):
    from sser_lobes.inference.demo import analyse

    short, long = audio
    probabilities, rows, figure = analyse(recognizer, short)
    expected = recognizer.classify_file(short)[0]
    assert [probabilities[k] for k in recognizer.labels] == pytest.approx(
        expected.tolist(), abs=1e-6
    )
    assert rows == [] and figure is None
    probabilities, rows, figure = analyse(recognizer, long)
    timeline = recognizer.classify_file(long, return_timeline=True)[4]
    assert [row[2] for row in rows] == [r["label"] for r in timeline]
    assert len(figure.axes[0].get_lines()) == len(recognizer.labels)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(AudioError, match="bad.wav"):
        analyse(recognizer, bad)


def test_space_files_load_the_folder_they_sit_in(exported, tmp_path, monkeypatch):
    """``app.py`` of an export builds the page of the folder it is in."""
    gradio = pytest.importorskip("gradio")
    folder = tmp_path / "space"
    shutil.copytree(exported[1], folder)
    assert (folder / "app.py").is_file()
    assert "sser[demo]==" in (folder / "requirements.txt").read_text()
    card = (folder / "README.md").read_text()
    assert "sdk: gradio" in card and "app_file: app.py" in card
    launched = []
    monkeypatch.setattr(gradio.Blocks, "launch", lambda self, **kw: launched.append(kw))
    monkeypatch.syspath_prepend(str(folder))
    namespace = runpy.run_path(str(folder / "app.py"), run_name="__main__")
    assert Path(namespace["recognizer"].hparams.folder) == folder
    assert launched and launched[0]["ssr_mode"] is False


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def page_url(recognizer):
    pytest.importorskip("gradio")
    from sser_lobes.inference.demo import build_demo, launch_options

    demo = build_demo(recognizer)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(),
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def browser_page(playwright):
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS
    )
    return browser, browser.new_page(viewport={"width": 1200, "height": 900})


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium (Debian's chromium package; .ci/run installs it)",
)
def test_the_page_in_a_browser(page_url, recognizer, audio, tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    short, long = audio
    requested = []
    with playwright_api.sync_playwright() as playwright:
        browser, page = browser_page(playwright)
        try:
            page.on("request", lambda request: requested.append(request.url))
            page.goto(page_url, wait_until="networkidle", timeout=60_000)
            upload = page.locator("#audio-input input[type=file]")

            upload.set_input_files(str(short))
            shown = page.locator("#probabilities [data-testid=label-output-value]")
            shown.wait_for(timeout=60_000)
            expected, _, _, label = recognizer.classify_file(short)
            assert shown.inner_text().strip() == label
            for name, probability in zip(recognizer.labels, expected.tolist()):
                meter = page.locator(f"#probabilities meter[aria-label='{name}']")
                assert float(meter.get_attribute("value")) == pytest.approx(
                    probability, abs=1e-5
                )
            assert not page.locator("#timeline-table").is_visible()

            # a fresh page: the upload field is replaced by the player
            page.goto(page_url, wait_until="networkidle", timeout=60_000)
            upload.set_input_files(str(long))
            table = page.locator("#timeline-table")
            table.wait_for(state="visible", timeout=60_000)
            timeline = recognizer.classify_file(long, return_timeline=True)
            grid = page.locator("#timeline-table [role=grid]")
            playwright_api.expect(grid).to_have_attribute(
                "aria-rowcount", str(len(timeline[4]) + 1), timeout=30_000
            )  # a header row, then one row per window
            for index, window in enumerate(timeline[4]):
                cell = page.locator(f"#timeline-table [data-testid=cell-{index}-2]")
                assert cell.inner_text().strip() == window["label"]
            assert shown.inner_text().strip() == timeline[3]
            page.locator("#timeline").wait_for(state="visible")
            screenshot = tmp_path / "demo_page.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    target = os.environ.get("SSER_DEMO_SCREENSHOT")
    if target:
        shutil.copy(screenshot, target)
    print(f"screenshot: {screenshot}", file=sys.stderr)
    outside = [
        url for url in requested if not url.startswith((page_url, "data:", "blob:"))
    ]
    assert not outside, f"the page fetched from outside: {outside[:3]}"


def test_command_line_refuses_a_bad_model_in_one_line(tmp_path, capsys):
    from sser_lobes.inference import demo

    assert demo.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "sser_model.json" in err[0]
