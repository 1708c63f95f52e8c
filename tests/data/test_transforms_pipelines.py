"""The pipelines match the papers' code: our transforms-v2 pipelines against the torchvision v1
pipelines of the OLTR / Kang et al. / BALMS code under the same seed, and Cutout against a naive loop."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision import tv_tensors
from torchvision.transforms import v2

from longtail.data.transforms import STATS, Cutout, cifar_transforms, imagenet_transforms, inaturalist_transforms

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _pil(h, w, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _same_under_seeds(ours, reference, make_input, seeds=range(6)):
    for s in seeds:
        torch.manual_seed(s)
        a = ours(make_input())
        torch.manual_seed(s)
        b = reference(make_input())
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_imagenet_train_pipeline_equals_the_papers_v1_pipeline():
    """OLTR / Kang et al. 2020 / BALMS data/dataloader.py, 'train' (ImageNet-LT, Places-LT)."""
    reference = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                           T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0), T.ToTensor(),
                           T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    _same_under_seeds(imagenet_transforms(train=True), reference, lambda: _pil(300, 400))


def test_imagenet_test_pipeline_equals_resize256_centercrop224():
    reference = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    out = imagenet_transforms(train=False)(_pil(375, 500))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    torch.testing.assert_close(out, reference(_pil(375, 500)), atol=1e-5, rtol=0)


def test_inaturalist_pipeline_has_no_colour_jitter_and_its_own_stats():
    reference = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize([0.466, 0.471, 0.380], [0.195, 0.194, 0.192])])
    _same_under_seeds(inaturalist_transforms(train=True), reference, lambda: _pil(300, 400))


def test_small_image_size_for_tests():
    assert imagenet_transforms(train=True, size=16)(_pil(40, 30)).shape == (3, 16, 16)
    assert imagenet_transforms(train=False, size=16)(_pil(40, 30)).shape == (3, 16, 16)
    with pytest.raises(ValueError, match="image size"):
        imagenet_transforms(train=True, size=0)


def _naive_cutout(image, cy, cx, length):
    out = image.clone()
    _, h, w = image.shape
    for y in range(h):
        for x in range(w):
            if cy - length // 2 <= y < cy + length // 2 and cx - length // 2 <= x < cx + length // 2:
                out[:, y, x] = 0
    return out


@pytest.mark.parametrize("seed", range(12))
def test_cutout_matches_the_papers_clipped_square(seed):
    """DeVries & Taylor 2017: centre uniform over the image, square clipped at the border."""
    image = torch.rand(3, 32, 32) + 0.1
    torch.manual_seed(seed)
    cy, cx = int(torch.randint(32, ())), int(torch.randint(32, ()))
    torch.manual_seed(seed)
    torch.testing.assert_close(Cutout(16)(image), _naive_cutout(image, cy, cx, 16), atol=0, rtol=0)


def test_cutout_area_is_clipped_near_borders():
    torch.manual_seed(0)
    areas = torch.tensor([float((Cutout(16)(torch.ones(1, 32, 32)) == 0).sum()) for _ in range(400)])
    assert areas.max() == 256 and areas.min() < 256
    # the two sides are independent: E[area] = E[side]^2, side = clipped length of [c - 8, c + 8)
    mean_side = sum(min(c + 8, 32) - max(c - 8, 0) for c in range(32)) / 32  # 14.0
    assert abs(float(areas.mean()) - mean_side**2) < 8


def test_cifar_pipeline_order_follows_balms():
    """RandomCrop(32, 4) + flip + AutoAugment(CIFAR-10 policy) + ToTensor + Cutout(16) + Normalize."""
    steps = cifar_transforms(train=True).transforms
    kinds = [type(t) for t in steps]
    assert kinds == [v2.RandomCrop, v2.RandomHorizontalFlip, v2.AutoAugment, v2.ToImage, v2.ToDtype, Cutout,
                     v2.Normalize]
    assert steps[0].padding == [4, 4, 4, 4] and steps[2].policy == v2.AutoAugmentPolicy.CIFAR10
    assert steps[5].length == 16
    # Cutout zeroes the [0, 1] image, so erased pixels come out as -mean/std after Normalize.
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in STATS["cifar"])
    white = tv_tensors.Image(torch.full((3, 32, 32), 255, dtype=torch.uint8))
    torch.manual_seed(0)
    out = v2.Compose(steps[3:])(white)
    erased = torch.isclose(out, -mean / std).all(dim=0)
    kept = torch.isclose(out, (1 - mean) / std).all(dim=0)
    assert erased.any() and (erased | kept).all()


def test_cifar_pipeline_without_autoaugment_equals_v1():
    mean, std = STATS["cifar"]
    reference = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    arr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ours = cifar_transforms(train=True, autoaugment=False, cutout=False)
    for s in range(6):
        torch.manual_seed(s)
        a = ours(tv_tensors.Image(torch.from_numpy(arr).permute(2, 0, 1)))
        torch.manual_seed(s)
        torch.testing.assert_close(a, reference(Image.fromarray(arr)), atol=1e-5, rtol=0)
    assert [type(t) for t in cifar_transforms(train=False).transforms] == [v2.ToImage, v2.ToDtype, v2.Normalize]
