"""The files that make an exported model folder a Hub Space (Gradio).

:func:`write_space_files` writes ``app.py``, which loads the folder it sits
in with :meth:`EmotionRecognizer.from_hparams` (data only) and serves the
page of :mod:`sser_lobes.inference.demo`, and ``requirements.txt``, the
packages a Space installs (this sser with its ``demo`` extra). The model
card's front matter names ``app.py`` for the Space (``sdk: gradio``).

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_space_files(folder)
['app.py', 'requirements.txt']
>>> "from_hparams(Path(__file__).parent)" in (folder / "app.py").read_text()
True
"""

from pathlib import Path

#: The files :func:`write_space_files` writes.
SPACE_FILES = ("app.py", "requirements.txt")

APP = '''"""The web page of this sser model (a Hub Space runs it: `python app.py`).

It loads the folder it sits in with EmotionRecognizer.from_hparams, which
reads sser_model.json and model.safetensors as data: no code of this folder
but this file runs. A local run: pip install -r requirements.txt; python app.py
"""

from pathlib import Path

from sser_lobes.inference.demo import build_demo, launch_options
from sser_lobes.inference.recognizer import EmotionRecognizer

recognizer = EmotionRecognizer.from_hparams(Path(__file__).parent)
demo = build_demo(recognizer)

if __name__ == "__main__":
    demo.launch(**launch_options())
'''


def requirements_text():
    """``requirements.txt`` of the Space: this sser with its demo extra."""
    from sser_lobes import __version__

    return (
        "# The Space's packages: sser (the model's code) with Gradio.\n"
        f"sser[demo]=={__version__}\n"
    )


def write_space_files(folder):
    """Write ``app.py`` and ``requirements.txt`` into a model folder.

    Returns
    -------
    list of str
        The names written.
    """
    folder = Path(folder)
    (folder / "app.py").write_text(APP, encoding="utf-8")
    (folder / "requirements.txt").write_text(requirements_text(), encoding="utf-8")
    return list(SPACE_FILES)
