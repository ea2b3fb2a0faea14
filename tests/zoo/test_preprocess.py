"""Image pre- and post-processing: torchvision's ImageNet evaluation transform without torch, and
top-k labels out of a zoo model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from llmasos import zoo
from llmasos.errors import DataError
from llmasos.zoo.imagenet_labels import IMAGENET_LABELS

from ..conftest import framework_params


def _photo(width=333, height=250, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.torch
@pytest.mark.parametrize("size", [(333, 250), (250, 333), (256, 256)])
def test_same_pixels_as_torchvision_transforms(size):
    from torchvision.models import ResNet18_Weights

    image = _photo(*size)
    expected = ResNet18_Weights.IMAGENET1K_V1.transforms()(image).numpy()
    got = zoo.prepare_images(image)
    assert got.shape == (1, 3, 224, 224)
    np.testing.assert_allclose(got[0], expected, atol=1e-6)


def test_arrays_lists_and_batches():
    image = _photo()
    pixels = np.asarray(image)
    from_pil = zoo.prepare_images(image, size=64)
    np.testing.assert_array_equal(zoo.prepare_images(pixels, size=64), from_pil)
    assert zoo.prepare_images([image, pixels], size=64).shape == (2, 3, 64, 64)
    assert zoo.prepare_images(np.stack([pixels] * 3), size=(48, 64)).shape == (3, 3, 48, 64)
    # float pixels in [0, 1] are resized in float, uint8 ones in PIL's 8-bit fixed point: within one level
    floats = zoo.prepare_images(pixels.astype(np.float32) / 255.0, size=64)
    np.testing.assert_allclose(floats, from_pil, atol=1.0 / 255 / 0.224)
    grey = zoo.prepare_images(pixels[..., 0], size=64)
    np.testing.assert_array_equal(grey[:, 0] * 0.229 + 0.485, grey[:, 1] * 0.224 + 0.456)
    with pytest.raises(DataError, match="an image array must be"):
        zoo.prepare_images(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(DataError, match="uint8 .* or float"):
        zoo.prepare_images(np.zeros((32, 32, 3), np.int32))


def test_top_k():
    scores = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    assert zoo.top_k(scores, k=2) == [[("1", 0.6), ("2", 0.3)], [("0", 0.5), ("2", 0.3)]]
    assert zoo.top_k(scores[0], k=1, labels=["a", "b", "c"]) == [[("b", 0.6)]]
    with pytest.raises(DataError, match="2 labels for 3 classes"):
        zoo.top_k(scores, labels=["a", "b"])


@pytest.mark.parametrize("framework", framework_params())
def test_classify_names_imagenet_classes_unless_the_head_was_replaced(framework):
    images = [_photo(seed=1), _photo(seed=2)]
    imagenet = zoo.classify(zoo.load("resnet18", framework, input_size=64, seed=0), images, k=3)
    assert len(imagenet) == 2 and all(len(row) == 3 for row in imagenet)
    assert all(label in IMAGENET_LABELS and 0.0 <= p <= 1.0 for row in imagenet for label, p in row)
    replaced = zoo.classify(zoo.load("resnet_tiny", framework, num_classes=4, seed=0), images, k=4)
    assert sorted(label for label, _ in replaced[0]) == ["0", "1", "2", "3"]
    assert sum(p for _, p in replaced[0]) == pytest.approx(1.0, abs=1e-5)
