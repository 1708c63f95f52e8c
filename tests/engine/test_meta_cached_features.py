"""The BALMS bilevel step on cached meta features equals the one that recomputes the frozen backbone
on every meta batch: same meta-gradients, same sampler logits after several steps, for a meta set of
held-out images (meta_set=val) and for the training images (meta_set=train, deterministic transform).
Float32 throughout (the cache stores float32): equal up to the summation order of batched convolutions."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from longtail.engine import (
    BackboneFeatureLoader,
    CachedFeatureLoader,
    FeatureCache,
    MetaFeatureLoader,
    MetaStepHook,
    intra_op_threads,
)
from longtail.losses import BalancedSoftmaxLoss
from longtail.samplers import ClassBalancedSampler, MetaSampler, MetaSamplerLogits

COUNTS = [20, 8, 3, 2]
C, B, M, STEPS = len(COUNTS), 6, 8, 5


def _backbone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():  # non-trivial frozen BatchNorm statistics
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval().requires_grad_(False)


def _images(counts, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return TensorDataset(torch.randn(len(labels), 1, 6, 6, generator=g), labels)


def _run(backbone, train, meta_data, cached_meta: bool):
    """STEPS bilevel + real steps; returns the meta-gradients of every step and the final logits."""
    torch.manual_seed(1)
    head = nn.Linear(4, C)
    opt = torch.optim.SGD(head.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-4)
    logits = MetaSamplerLogits(COUNTS)
    adam = torch.optim.Adam(logits.parameters(), lr=0.05)
    train_cache = FeatureCache.compute(backbone, train, batch_size=7)
    sampler = MetaSampler(train.tensors[1], logits, batch_size=B, num_batches=STEPS, seed=3)
    loader = MetaFeatureLoader(sampler, train_cache.lookup)
    stream_sampler = ClassBalancedSampler(meta_data.tensors[1], num_samples=STEPS * M, seed=4)
    if cached_meta:
        stream = CachedFeatureLoader(FeatureCache.compute(backbone, meta_data, batch_size=5), stream_sampler, M)
    else:
        stream = BackboneFeatureLoader(DataLoader(meta_data, batch_size=M, sampler=stream_sampler), backbone,
                                       torch.device("cpu"))
    loss = BalancedSoftmaxLoss(COUNTS)
    hook = MetaStepHook(head=head, sampler_logits=logits, meta_optimizer=adam, optimizer=opt,
                        inner_loss=loss.per_sample, current_draw=loader.current_draw, meta_batches=lambda: iter(stream))
    grads = []
    for step, (x, y) in enumerate(loader):
        hook(x, y, step)
        grads.append(logits.logits.grad.clone())
        opt.zero_grad(set_to_none=True)
        loss(head(x), y).backward()
        opt.step()
    return grads, logits.logits.detach().clone(), logits.sampling_probability()


@pytest.mark.parametrize("meta_set", ["val", "train"])
def test_cached_meta_features_give_the_same_meta_gradients_and_logits_as_recomputing(meta_set):
    backbone, train = _backbone(), _images(COUNTS, seed=0)
    meta_data = _images([5] * C, seed=1) if meta_set == "val" else train
    with intra_op_threads(1):  # tiny tensors: one thread is fast on a loaded machine
        recomputed = _run(backbone, train, meta_data, cached_meta=False)
        cached = _run(backbone, train, meta_data, cached_meta=True)
    assert len(recomputed[0]) == STEPS
    for step, (a, b) in enumerate(zip(recomputed[0], cached[0])):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), f"meta-gradient of step {step}"
    assert recomputed[0][0].abs().max() > 1e-4, "a non-trivial meta-gradient"
    assert torch.allclose(recomputed[1], cached[1], rtol=1e-4, atol=1e-6)
    assert torch.allclose(recomputed[2], cached[2], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(cached[1], MetaSamplerLogits(COUNTS).logits, atol=1e-3), "the logits moved"


def test_intra_op_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"):
        with intra_op_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
