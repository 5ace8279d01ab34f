from __future__ import annotations

import pytest

from detector.gallery import Gallery, UploadFile
from detector.model_folder import load_model
from detector.pipeline import Detector
from tests.synthetic import product_photo


@pytest.fixture(scope="session")
def zero_shot():
    return load_model()


@pytest.fixture(scope="session")
def embedder(zero_shot):
    return zero_shot.embedder(batch_size=16)


@pytest.fixture
def gallery(tmp_path, zero_shot, embedder):
    g = Gallery(tmp_path / "var", embedder=embedder, model_fingerprint=zero_shot.fingerprint).open(show_progress=False)
    yield g
    g.close()


@pytest.fixture
def populated(gallery):
    """Two brands with four references each."""
    for brand in ("acme", "zenit"):
        gallery.create_brand(brand)
        gallery.add_references(brand, [UploadFile(f"{brand}{i}.png", product_photo(brand, i)) for i in range(4)])
    return gallery


@pytest.fixture
def detector(zero_shot, populated):
    return Detector(zero_shot, populated)
