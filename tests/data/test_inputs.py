"""A run's recorded test-time input pipeline (:class:`InputSpec`, what predict and export use without the
data) gives the tensors its dataset's own test transform gives, for every kind of registered dataset; a
pipeline it cannot describe is not recorded."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from helpers.cifar_stand_in import write_stand_in
from helpers.lt_image_tree import write_jpeg
from longtail.data import ArrayImageDataset, build_dataset, sources
from longtail.data.inputs import InputSpec
from longtail.data.transforms import inaturalist_transforms

FASHION_INSTALLED = all((sources.DEBIAN_FASHION_MNIST / f"{n}.gz").exists() for n in sources.FASHION_MNIST_FILES)


def in_memory_data(kind, tmp_path):
    if kind == "synthetic_lt":
        return build_dataset("synthetic_lt", image_size=12)
    if kind == "cifar10_lt":
        tar = write_stand_in(tmp_path / "copy.tar", per_class={"train": 6, "test": 2})
        return build_dataset("cifar10_lt", root=tar, n_max=5, imbalance_factor=5, val_per_class=1)
    if not FASHION_INSTALLED:
        pytest.skip(f"Fashion-MNIST is not installed in {sources.DEBIAN_FASHION_MNIST}")
    return build_dataset("fashion_mnist_lt", root=tmp_path)


@pytest.mark.parametrize("kind", ["synthetic_lt", "cifar10_lt", "fashion_mnist_lt"])
def test_in_memory_datasets_scale_and_normalise_as_their_test_transform(kind, tmp_path):
    data = in_memory_data(kind, tmp_path)
    spec = InputSpec.of(data)
    assert spec == InputSpec(kind, data.in_channels, data.image_size, in_memory=True)
    assert InputSpec.from_dict(spec.as_dict()) == spec
    preprocess = spec.preprocess()
    # random pixels (not the stand-ins' flat squares) through the dataset's own test transform and through the spec
    size, channels = data.image_size, data.in_channels
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, size, size, channels), dtype=np.uint8))
    theirs = ArrayImageDataset(images, torch.zeros(5, dtype=torch.long), data.test.transform)
    for i in range(5):
        pixels = images[i].numpy()
        mine = preprocess(Image.fromarray(pixels[..., 0] if channels == 1 else pixels))
        assert mine.dtype == torch.float32
        torch.testing.assert_close(mine, theirs[i][0], atol=1e-6, rtol=0)
    # an image of another size or mode is converted and resized to what the model saw
    assert preprocess(Image.new("RGBA", (size + 7, size + 3))).shape == (channels, size, size)


def test_file_datasets_resize_and_crop_as_their_test_transform(tmp_path):
    for split, per_class in (("train", 3), ("test", 2)):
        for label, name in enumerate(("ant", "bee")):
            for i in range(per_class):
                write_jpeg(tmp_path / split / name / f"{i}.jpg", label, seed=10 * label + i, size=(40, 27))
    data = build_dataset("image_folder", root=tmp_path, image_size=16, val_per_class=1)
    spec = InputSpec.of(data)
    assert spec == InputSpec("image_folder", 3, 16, in_memory=False)
    preprocess = spec.preprocess()
    for i, path in enumerate(data.test.paths):
        with Image.open(data.test.root / path) as image:
            torch.testing.assert_close(preprocess(image), data.test[i][0], atol=1e-6, rtol=0)


def test_inaturalist_runs_get_inaturalist_statistics():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (37, 50, 3), dtype=np.uint8))
    mine = InputSpec("inat2018", 3, 24, in_memory=False).preprocess()(image)
    torch.testing.assert_close(mine, inaturalist_transforms(train=False, size=24)(image), atol=1e-6, rtol=0)


def test_a_pipeline_it_cannot_describe_is_not_recorded():
    data = build_dataset("synthetic_lt", image_size=12)
    data.test.transform = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize((0.1,), (0.9,))])
    assert InputSpec.of(data) is None
