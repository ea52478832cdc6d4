"""Tests of sser_lobes.evaluation.plots: PNG files are written without a display."""

import matplotlib.image
import numpy as np
import pytest

from sser_lobes.evaluation.plots import plot_confusion_matrix, plot_learning_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    assert path.exists()
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    # not a blank canvas
    assert float(np.ptp(image[..., :3])) > 0.1
    return image


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_png(tmp_path, normalize):
    cm = [[30, 5, 1, 0], [4, 20, 2, 1], [0, 3, 25, 2], [0, 0, 0, 0]]  # last: absent
    out = plot_confusion_matrix(
        cm,
        ["neu", "hap", "sad", "ang"],
        tmp_path / "plots" / "cm.png",
        title="IEMOCAP fold 1",
        normalize=normalize,
    )
    assert out == tmp_path / "plots" / "cm.png"
    _check_png(out)


def test_confusion_matrix_accepts_numpy_and_str_path(tmp_path):
    cm = np.array([[2, 1], [0, 3]], dtype=np.int64)
    out = plot_confusion_matrix(cm, ("a", "b"), str(tmp_path / "cm.png"))
    _check_png(out)


def test_confusion_matrix_bad_input(tmp_path):
    path = tmp_path / "cm.png"
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix([[1, 2, 3], [4, 5, 6]], ["a", "b"], path)
    with pytest.raises(ValueError, match="labels"):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"], path)
    with pytest.raises(ValueError, match="non-negative"):
        plot_confusion_matrix([[1, -2], [3, 4]], ["a", "b"], path)
    assert not path.exists()


def test_learning_curves_png(tmp_path):
    history = {
        "1": {"train_loss": 1.35, "valid_loss": 1.30, "valid_UA": 0.41, "lr": 1e-4},
        "2": {"train_loss": 1.10, "valid_loss": 1.20, "valid_UA": 0.50, "lr": 9e-5},
        "10": {"train_loss": 0.80, "valid_loss": 1.15, "valid_UA": 0.58, "lr": 8e-5},
        3: {"train_loss": 0.95, "valid_loss": 1.18, "valid_WA": 0.55, "lr": 8e-5},
    }
    out = plot_learning_curves(history, tmp_path / "curves.png", title="run")
    _check_png(out)


def test_learning_curves_losses_only_and_gaps(tmp_path):
    history = {
        0: {"train_loss": 2.0, "valid_loss": None},
        1: {"train_loss": 1.5, "valid_loss": 1.6, "lr_encoder": 1e-5},
        2: {"train_loss": float("nan")},
    }
    _check_png(plot_learning_curves(history, tmp_path / "loss.png"))


def test_learning_curves_bad_input(tmp_path):
    path = tmp_path / "c.png"
    with pytest.raises(ValueError, match="non-empty"):
        plot_learning_curves({}, path)
    with pytest.raises(ValueError, match="epoch keys"):
        plot_learning_curves({"first": {"train_loss": 1.0}}, path)
    with pytest.raises(ValueError, match="twice"):
        plot_learning_curves({1: {"train_loss": 1.0}, "1": {"train_loss": 1.0}}, path)
    with pytest.raises(ValueError, match="must be a number"):
        plot_learning_curves({1: {"train_loss": "high"}}, path)
    with pytest.raises(ValueError, match="dict of metric values"):
        plot_learning_curves({1: 0.5}, path)
    assert not path.exists()
