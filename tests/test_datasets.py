"""Demo photos: the scikit-learn ones need no scikit-image, and an unknown name is a clear error listing the
names, with or without scikit-image installed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from simvis_widgets import cli
from simvis_widgets.datasets import DEMO_IMAGES, SKLEARN_PHOTOS, UnknownDemoImageError, demo_image
from simvis_widgets.errors import ImageInputError, SimvisError


@pytest.fixture
def no_skimage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import skimage`` (and any of its submodules) fail, as on a machine without scikit-image."""
    for name in [m for m in sys.modules if m == "skimage" or m.startswith("skimage.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError):
        import skimage  # noqa: F401


@pytest.mark.parametrize("name", SKLEARN_PHOTOS)
def test_sklearn_photos_need_no_skimage(no_skimage: None, name: str) -> None:
    from sklearn.datasets import load_sample_image

    img = demo_image(name)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 400
    np.testing.assert_array_equal(img, load_sample_image(f"{name}.jpg"))


def _assert_lists_every_name(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert message.startswith("unknown demo image 'nope'; choose one of ")
    for name in DEMO_IMAGES:
        assert name in message
    assert "pip install" not in message
    return message


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(UnknownDemoImageError) as err:
        demo_image("nope")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ImageInputError)
    assert isinstance(err.value, SimvisError)
    assert "not installed" not in _assert_lists_every_name(err)


def test_unknown_name_without_skimage_lists_the_names(no_skimage: None) -> None:
    with pytest.raises(KeyError) as err:
        demo_image("nope")
    message = _assert_lists_every_name(err)
    assert "scikit-image is not installed: only china, flower work here" in message


def test_skimage_photo_without_skimage_says_what_to_install(no_skimage: None) -> None:
    with pytest.raises(ImportError, match=r"'chelsea' ships inside scikit-image.*pip install.*china and flower"):
        demo_image("chelsea")


def test_cli_demo_names_without_skimage(no_skimage: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI refuses an unknown ``demo:NAME`` before building any network, with the list of names."""
    assert cli.main(["explain", "demo:nope", "demo:china", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "unknown demo image 'nope'; choose one of motorcycle_left" in err and "flower" in err
    assert not (tmp_path / "x.png").exists()
