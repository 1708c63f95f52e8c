"""With DataLoader workers, an epoch's random augmentation depends only on (seed, epoch), so a run
resumed at epoch k draws the same augmentations as an uninterrupted one."""

import torch
from torch.utils.data import Dataset

from longtail.config import TrainConfig
from longtail.engine.distributed import DistInfo
from longtail.engine.trainer import seed_everything
from longtail.samplers import RandomSampler
from longtail.workflows import build


class RandomAugment(Dataset):
    """Returns a draw of the worker's torch RNG, as a random transform would."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.rand(1), i


def epoch_draws(loader, epoch, seed=0):
    seed_everything(seed, epoch + 1)  # what run_training does at the start of each epoch
    loader.sampler.set_epoch(epoch)
    return torch.cat([x for x, _ in loader])


def test_resumed_epoch_draws_the_same_augmentation_with_workers():
    cfg = TrainConfig(num_workers=2, batch_size=4)
    info = DistInfo()

    def loader():
        return build.train_loader(RandomAugment(), RandomSampler(8, seed=0), cfg, info)

    full = loader()
    draws = [epoch_draws(full, e) for e in range(3)]
    resumed = loader()  # a new process resuming at epoch 2
    assert torch.equal(epoch_draws(resumed, 2), draws[2])
    assert not torch.equal(draws[1], draws[2])
