"""predict() under DDP puts the ranks' strided shards back in dataset order (simulated ranks; the real
2-process run is tests/cli/test_ddp_train.py)."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from longtail.engine import distributed as dist_utils
from longtail.engine import evaluate, predict
from longtail.samplers import SequentialShardSampler


def shard_outputs(model, dataset, world, rank):
    loader = DataLoader(dataset, batch_size=3, sampler=SequentialShardSampler(len(dataset), num_replicas=world,
                                                                              rank=rank))
    return predict(model, loader, torch.device("cpu"))  # single process: this rank's shard only


def test_gathered_shards_are_in_dataset_order(monkeypatch):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    inputs, targets = torch.randn(11, 4), torch.arange(11) % 3
    dataset = TensorDataset(inputs, targets)
    expected_logits, expected_targets = predict(model, DataLoader(dataset, batch_size=4), torch.device("cpu"))
    for world in (2, 3, 4, 16):  # 16 > 11: some ranks hold no sample
        shards = [shard_outputs(model, dataset, world, r) for r in range(world)]
        shards = [(lg if lg.numel() else None, tg) for lg, tg in shards]
        monkeypatch.setattr(dist_utils, "is_distributed", lambda: True)
        monkeypatch.setattr(dist_utils, "all_gather_objects", lambda obj, shards=shards: shards)
        loader = DataLoader(dataset, sampler=SequentialShardSampler(11, num_replicas=world, rank=0), batch_size=3)
        logits, gathered_targets = predict(model, loader, torch.device("cpu"))
        monkeypatch.undo()
        torch.testing.assert_close(logits, expected_logits)  # batch size changes the last bit only
        assert torch.equal(gathered_targets, expected_targets)


def test_evaluate_counts_every_sample():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 0, 1])
    m = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=3), torch.device("cpu"), [10, 3], many=5, few=2)
    assert m["num_samples"] == 4 and m["top1"] == 0.75 and m["many"] == 1.0 and m["medium"] == 0.5
