"""ImageFetcher (the Meta Sampler's batch loader when stage 2 recomputes features) loads a batch with one
``__getitems__`` call, so an in-memory dataset with a batched transform augments it in one go; datasets
without ``__getitems__`` are read item by item. Both give the same batch."""

import torch
from torch import nn

from longtail.data import ArrayImageDataset
from longtail.data.transforms import cifar_batch_transforms
from longtail.engine import ImageFetcher


class CountingDataset(ArrayImageDataset):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.item_calls = self.batch_calls = 0

    def __getitem__(self, index):
        self.item_calls += 1
        return super().__getitem__(index)

    def __getitems__(self, indices):
        self.batch_calls += 1
        return super().__getitems__(indices)


class ItemsOnly(torch.utils.data.Dataset):
    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]


def dataset(train: bool) -> CountingDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 32, 32, 3), dtype=torch.uint8, generator=g)
    return CountingDataset(images, torch.arange(40) % 10, transform=cifar_batch_transforms(train=train))


def backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_one_batched_call_gives_the_item_by_item_batch():
    data, net = dataset(train=False), backbone()
    indices = torch.tensor([3, 17, 3, 39, 0, 22])
    feats, labels = ImageFetcher(data, net, torch.device("cpu")).lookup(indices)
    assert (data.batch_calls, data.item_calls) == (1, 0)
    ref_feats, ref_labels = ImageFetcher(ItemsOnly(data), net, torch.device("cpu")).lookup(indices)
    assert data.item_calls == len(indices)
    torch.testing.assert_close(feats, ref_feats, rtol=0, atol=1e-6)
    assert labels.tolist() == ref_labels.tolist() == (indices % 10).tolist()
    assert not net[1].training  # freeze_bn: the frozen backbone runs in eval mode


def test_augmented_batch_is_drawn_per_sample():
    data = dataset(train=True)
    fetcher = ImageFetcher(data, nn.Flatten(), torch.device("cpu"))
    torch.manual_seed(1)
    feats, labels = fetcher.lookup(torch.full((16,), 5))
    assert data.batch_calls == 1 and labels.tolist() == [5] * 16
    # one image sixteen times: each copy has its own crop / flip / AutoAugment / Cutout draw
    assert len({tuple(f.tolist()) for f in feats}) > 8
