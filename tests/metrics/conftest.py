from __future__ import annotations

import pytest
from PIL import Image

from core import zoo


@pytest.fixture(scope="session")
def backbones(zoo_home):
    """The tiny scoring backbones, loaded once; tests must not modify them."""
    return {f: zoo.load(f, "tiny", home=zoo_home) for f in ("clip", "negclip", "dino", "detector", "segmenter")}


@pytest.fixture(scope="session")
def photos(dreambooth):
    """Real DreamBooth photos: five of the dog, one teapot, one backpack (backgrounds)."""
    root = dreambooth / "images"
    return {
        "dog": [Image.open(root / "dog" / f"0{i}.jpg").convert("RGB") for i in range(5)],
        "teapot": Image.open(root / "teapot" / "03.jpg").convert("RGB"),
        "backpack": Image.open(root / "backpack" / "01.jpg").convert("RGB"),
    }
