from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import simvis_widgets as sv

torch.set_num_threads(2)
# No test may reach the network: weight downloads must fail fast and clearly instead.
os.environ["SIMVIS_OFFLINE"] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on a lent GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photos that ship inside scikit-image (offline)."""
    from skimage import data

    left, right, _ = data.stereo_motorcycle()
    return {
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "astronaut": data.astronaut(),
        "motorcycle_left": left,
        "motorcycle_right": right,
    }


@pytest.fixture(scope="session")
def lite0() -> sv.ModelSession:
    """The embedded default, real ImageNet weights, CPU, 224 px to keep the tests quick."""
    return sv.ModelSession.from_pretrained("efficientnet_lite0", size=224, device="cpu")


@pytest.fixture(scope="session")
def resnet18_random() -> sv.ModelSession:
    torch.manual_seed(0)
    return sv.ModelSession.from_pretrained("resnet18", pretrained=False, size=128, device="cpu")
