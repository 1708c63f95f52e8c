"""The batched CIFAR and Fashion-MNIST augmentation against its per-sample definition: the same distribution of crops,
flips and Cutout holes, AutoAugment operations identical to torchvision's per-sample ones."""

from __future__ import annotations

import itertools

import pytest
import torch
from torchvision.transforms import InterpolationMode, v2

from longtail.data import ArrayImageDataset
from longtail.data.array_dataset import collate
from longtail.data.transforms import (
    STATS,
    BatchAugment,
    Cutout,
    autoaugment_batch,
    cifar_batch_transforms,
    cutout_batch,
    random_crop_batch,
)


def coded_images(b: int, h: int = 8, w: int = 8) -> torch.Tensor:
    """Pixel (y, x) of every image holds 1 + y * w + x (0 is left for padding), so a crop's offset can be
    read back from its top-left pixel."""
    return (1 + torch.arange(h * w, dtype=torch.uint8).view(1, 1, h, w)).expand(b, 3, h, w).contiguous()


def test_random_crop_offsets_are_uniform_and_match_the_padded_crop():
    torch.manual_seed(0)
    images, padding = coded_images(9000), 2
    out = random_crop_batch(images, padding)
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    for i in range(200):  # each output is a window of the zero-padded image
        found = [(dy, dx) for dy, dx in itertools.product(range(2 * padding + 1), repeat=2)
                 if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(found) == 1
    # offset distribution: output pixel (4, 4) is image pixel (4 + dy - padding, 4 + dx - padding)
    value = out[:, 0, 4, 4].long() - 1
    y, x = value // 8, value % 8
    seen = torch.zeros(2 * padding + 1, 2 * padding + 1)
    seen.index_put_((y - 4 + padding, x - 4 + padding), torch.ones(out.shape[0]), accumulate=True)
    expected = out.shape[0] / seen.numel()
    assert ((seen - expected).abs() / expected).max() < 0.2  # 25 cells of ~360 samples each


def test_flip_rate_is_one_half_and_per_sample():
    torch.manual_seed(1)
    aug = BatchAugment(padding=0, flip=True)
    images = coded_images(4000)
    out = aug(images)
    plain = BatchAugment(train=False)(images)
    flipped = torch.tensor([torch.equal(o, p.flip(-1)) for o, p in zip(out, plain)])
    same = torch.tensor([torch.equal(o, p) for o, p in zip(out, plain)])
    assert bool((flipped ^ same).all())
    assert abs(flipped.float().mean().item() - 0.5) < 0.03


def test_cutout_hole_area_matches_the_per_sample_cutout():
    torch.manual_seed(2)
    n, size, length = 20000, 32, 16
    batched = cutout_batch(torch.ones(n, 1, size, size), length)
    per_sample = torch.stack([Cutout(length)(torch.ones(1, size, size)) for _ in range(4000)])
    # exact expectation: the hole spans [c - 8, c + 8) clipped to the image, c uniform per axis
    side = torch.tensor([min(c + length // 2, size) - max(c - length // 2, 0) for c in range(size)], dtype=torch.float64)
    expected = float(side.mean() ** 2)
    assert abs((batched == 0).sum((1, 2, 3)).double().mean().item() - expected) < 0.02 * expected
    assert abs((per_sample == 0).sum((1, 2, 3)).double().mean().item() - expected) < 0.04 * expected
    # holes are axis-aligned rectangles
    hole = batched[0, 0] == 0
    rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
    assert int(hole.sum()) == rows.numel() * cols.numel()


def _candidates(image: torch.Tensor, policy, augment: v2.AutoAugment) -> list[torch.Tensor]:
    """Every output torchvision's per-sample AutoAugment can give for ``policy`` when both operations
    apply: one per sign combination of the signed magnitudes."""
    outs = []
    for signs in itertools.product((1, -1), repeat=2):
        x = image
        for (name, _, idx), sign in zip(policy, signs):
            magnitudes_fn, signed = augment._AUGMENTATION_SPACE[name]
            mags = magnitudes_fn(10, 32, 32)
            m = float(mags[idx]) * (sign if signed else 1) if mags is not None else 0.0
            x = augment._apply_image_or_video_transform(x, name, m, interpolation=InterpolationMode.NEAREST,
                                                        fill=augment._fill)
        outs.append(x)
    return outs


def test_autoaugment_batch_applies_torchvisions_operations_per_sample():
    torch.manual_seed(3)
    augment = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    for policy in augment._policies:
        forced = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
        forced._policies = [tuple((name, 1.0, idx) for name, _, idx in policy)]  # both operations always apply
        out = autoaugment_batch(images, forced)
        for i in range(images.shape[0]):
            assert any(torch.equal(out[i], c) for c in _candidates(images[i], policy, augment)), policy


def test_autoaugment_batch_draws_sub_policies_uniformly_and_applies_with_their_probability():
    torch.manual_seed(4)
    augment = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    # Invert (p 0.1) then Contrast (p 0.2, magnitude index 6): the 0.1 that Invert applies to is visible
    augment._policies = [augment._policies[0]]
    images = torch.full((20000, 3, 32, 32), 10, dtype=torch.uint8)
    out = autoaugment_batch(images, augment)
    inverted = (out[:, 0, 0, 0] == 245).float().mean().item()
    assert abs(inverted - 0.1) < 0.01


def test_dataset_hands_whole_batches_to_a_batched_transform():
    torch.manual_seed(5)
    images = torch.randint(0, 256, (10, 32, 32, 3), dtype=torch.uint8)
    ds = ArrayImageDataset(images, torch.arange(10), cifar_batch_transforms(train=False))
    x, y = collate(ds.__getitems__([3, 1, 4]))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in STATS["cifar"])
    expected = (images[[3, 1, 4]].permute(0, 3, 1, 2).float() / 255 - mean) / std
    assert torch.allclose(x, expected) and y.tolist() == [3, 1, 4]
    single, label = ds[4]
    assert torch.allclose(single, expected[2]) and label == 4
    # the DataLoader's default collate (code that builds its own loader) gets the same batch
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    first, labels = next(iter(loader))
    assert first.shape == (4, 3, 32, 32) and labels.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("autoaugment", [False, True])
def test_train_pipeline_matches_the_per_sample_pipeline_statistics(autoaugment):
    """Same recipe, same distribution: mean and std of the augmented pixels agree between the batched and
    the per-sample pipelines on the same images (a wrong crop fill, flip or normalisation shows here)."""
    from longtail.data.transforms import cifar_transforms

    torch.manual_seed(6)
    images = torch.randint(0, 256, (3000, 3, 32, 32), dtype=torch.uint8)
    batched = cifar_batch_transforms(True, autoaugment=autoaugment, cutout=autoaugment)(images)
    per_sample_tf = cifar_transforms(True, autoaugment=autoaugment, cutout=autoaugment)
    from torchvision import tv_tensors
    per_sample = torch.stack([per_sample_tf(tv_tensors.Image(x)) for x in images])
    # per-image means spread by ~0.4 under AutoAugment: 0.03 is ~3 standard errors of the difference
    assert abs(batched.mean() - per_sample.mean()) < 0.03
    assert abs(batched.std() - per_sample.std()) < 0.03
    assert abs((batched == batched.min()).float().mean() - (per_sample == per_sample.min()).float().mean()) < 0.01


def _crop_and_flip_of(out: torch.Tensor, images: torch.Tensor, padding: int) -> list[tuple[int, int, bool]]:
    """Which (row offset, column offset, flipped) turned each image into its output (exactly one must)."""
    h, w = images.shape[-2:]
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    found = []
    for o, p in zip(out, padded):
        matches = [(dy, dx, flip) for dy, dx in itertools.product(range(2 * padding + 1), repeat=2)
                   for flip in (False, True)
                   if torch.equal(o, (lambda c: c.flip(-1) if flip else c)(p[:, dy:dy + h, dx:dx + w]))]
        assert len(matches) == 1
        found.append(matches[0])
    return found


def test_fashion_mnist_batched_pipeline_matches_the_per_sample_one():
    """Test time: identical tensors. Training: every output is one padded crop, flipped or not, and the
    25 offsets x 2 flips are drawn with the per-sample pipeline's (uniform) frequencies."""
    from torchvision import tv_tensors

    from longtail.data.transforms import fashion_mnist_batch_transforms, fashion_mnist_transforms

    torch.manual_seed(7)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    per_sample_test = torch.stack([fashion_mnist_transforms(False)(tv_tensors.Image(x)) for x in images])
    assert torch.allclose(fashion_mnist_batch_transforms(False)(images), per_sample_test, atol=1e-6)
    assert torch.equal(fashion_mnist_batch_transforms(True, augment=False)(images),
                       fashion_mnist_batch_transforms(False)(images))

    n, padding = 2000, 2
    coded = (1 + torch.arange(28 * 28) % 251).to(torch.uint8).view(1, 1, 28, 28).expand(n, 1, 28, 28).contiguous()
    mean, std = STATS["fashion_mnist"]
    to_uint8 = lambda x: (x * std[0] + mean[0]).mul(255).round().to(torch.uint8)  # noqa: E731  undo Normalize
    batched = _crop_and_flip_of(to_uint8(fashion_mnist_batch_transforms(True)(coded)), coded, padding)
    tf = fashion_mnist_transforms(True)
    per_sample = _crop_and_flip_of(to_uint8(torch.stack([tf(tv_tensors.Image(x)) for x in coded[:n]])), coded, padding)
    for draws in (batched, per_sample):
        cells = torch.zeros(2 * padding + 1, 2 * padding + 1, 2)
        for dy, dx, flip in draws:
            cells[dy, dx, int(flip)] += 1
        expected = n / cells.numel()  # 40 per cell
        chi2 = float(((cells - expected) ** 2 / expected).sum())
        assert chi2 < 90, chi2  # 49 degrees of freedom: P(chi2 > 90) < 1e-3
