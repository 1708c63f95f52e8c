"""The training engine: plain functions, ``train_one_epoch``, ``predict`` and ``evaluate``, and the step
skeleton every training loop shares (:func:`optimizer_step`, :func:`stop_if_not_finite`).

``train_one_epoch`` sums the loss dict, stops on a non-finite loss with a message naming the step
(on every rank at once, so DDP does not hang), and reduces losses across ranks only for logging.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from . import distributed as dist_utils


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or inf; the run stops, its last checkpoint stays."""


LossFn = Callable[[Tensor, Tensor], Tensor | Mapping[str, Tensor]]


def _as_loss_dict(out: Tensor | Mapping[str, Tensor]) -> dict[str, Tensor]:
    return dict(out) if isinstance(out, Mapping) else {"loss": out}


def train_one_epoch(model: nn.Module, loader: Iterable, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *, device: torch.device,
                    epoch: int, step_hook: Callable[[Tensor, Tensor, int], None] | None = None,
                    progress: Callable[[int, dict], None] | None = None, max_grad_norm: float | None = None,
                    memory_format: torch.memory_format = torch.contiguous_format,
                    amp: torch.dtype | None = None, scaler: "torch.amp.GradScaler | None" = None,
                    batch_transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None) -> dict:
    """One pass over ``loader``. ``loss_fn(logits, target)`` returns a tensor or a dict of tensors.

    ``step_hook(inputs, targets, global_step)``, if given, runs before each update (the Meta
    Sampler's bilevel step uses it). ``progress(step, stats)`` is called after every step.
    Returns the mean of each loss term over the epoch (averaged over ranks), the number of samples
    seen on this rank, and the wall time. ``memory_format``: of the 4-d input batches (channels_last
    for a model converted with ``model.to(memory_format=torch.channels_last)``).

    ``amp`` (torch.bfloat16 / torch.float16): the forward pass and the loss run under ``torch.autocast``
    (the loss functions' log-softmax runs in float32 there); ``scaler`` (a GradScaler, for float16) scales
    the loss and skips steps whose gradients overflow. The step hook (the Meta Sampler's bilevel step)
    stays in float32. ``batch_transform(inputs, targets)``, if given, runs on each batch on the device before the
    step (mixup / CutMix / ReMix: the targets become soft, (B, C)).
    """
    model.train()
    sums: dict[str, float] = {}
    seen, start, steps = 0, time.perf_counter(), 0
    num_batches = len(loader) if hasattr(loader, "__len__") else -1
    for step, (inputs, targets) in enumerate(loader):
        inputs, targets = _to_device(inputs, device, memory_format), targets.to(device, non_blocking=True)
        if batch_transform is not None:
            inputs, targets = batch_transform(inputs, targets)
        global_step = epoch * max(num_batches, 0) + step
        if step_hook is not None:
            step_hook(inputs, targets, global_step)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            losses = _as_loss_dict(loss_fn(model(inputs), targets))
        losses = {k: v.float() for k, v in losses.items()}
        total = sum(losses.values())
        stop_if_not_finite(total, lambda: (
            f"non-finite training loss ({float(total.detach()):.4g} on this rank) at epoch {epoch + 1}, "
            f"step {step + 1}/{num_batches} (counting from 1, as the progress log does; global step "
            f"{global_step}); terms: { {k: float(v.detach()) for k, v in losses.items()} }. "
            "The last checkpoint is intact. Lower the learning rate, check the inputs for NaN, or "
            "check the class counts given to the loss."))
        optimizer_step(total, optimizer, scheduler, parameters=model.parameters(), max_grad_norm=max_grad_norm,
                       scaler=scaler)
        n = targets.shape[0]
        seen += n
        steps += 1
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
        if progress is not None:
            progress(step, {"loss": float(total.detach()), "lr": optimizer.param_groups[0]["lr"]})
    stats = {k: v / max(seen, 1) for k, v in sums.items()}
    reduced = {k: float(dist_utils.all_reduce_mean(torch.tensor(v, device=device))) for k, v in stats.items()}
    return {**reduced, "samples": seen, "steps": steps, "seconds": time.perf_counter() - start}


def stop_if_not_finite(total: Tensor, message: Callable[[], str]) -> None:
    """Raise :class:`NonFiniteLossError` with ``message()`` when ``total`` is NaN or inf on any rank (a
    collective under DDP: every rank stops at the same step instead of the others hanging in the next
    all-reduce)."""
    if dist_utils.any_rank(not bool(torch.isfinite(total)), total.device):
        raise NonFiniteLossError(message())


def optimizer_step(total: Tensor, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *,
                   parameters: Iterable[Tensor] | None = None, max_grad_norm: float | None = None,
                   scaler: "torch.amp.GradScaler | None" = None, before_step: Callable[[], None] | None = None) -> None:
    """The step every training loop of longtail takes (classification, detection end to end and decoupled):
    zero the gradients, backpropagate ``total`` (scaled by ``scaler`` for float16), run ``before_step``
    (e.g. averaging gradients over ranks without DDP), clip the gradient norm of ``parameters`` to
    ``max_grad_norm`` (the true, unscaled gradients), step the optimiser (the scaler skips a step whose
    gradients overflowed) and the per-iteration schedule."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(total).backward()
    else:
        total.backward()
    if before_step is not None:
        before_step()
    if max_grad_norm is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip the true gradients
        nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if scheduler is not None:
        scheduler.step()


def _to_device(inputs: Tensor, device: torch.device, memory_format: torch.memory_format) -> Tensor:
    if inputs.ndim == 4 and memory_format is not torch.contiguous_format:
        return inputs.to(device, non_blocking=True, memory_format=memory_format)
    return inputs.to(device, non_blocking=True)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device,
            memory_format: torch.memory_format = torch.contiguous_format,
            amp: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Logits (N, C) and targets (N,) over the loader's dataset, in dataset order.

    Under DDP the loader must use :class:`longtail.samplers.SequentialShardSampler` (rank r holds
    indices r, r + W, ...); the shards are gathered and put back in order on every rank. It is then
    a collective call (every rank must make it), which also gives every rank rank 0's buffers.
    """
    model = _evaluation_module(model)
    model.eval()
    logits, targets = [], []
    for inputs, y in loader:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits.append(model(_to_device(inputs, device, memory_format)).float().cpu())
        targets.append(y.cpu())
    out = torch.cat(logits) if logits else None
    tgt = torch.cat(targets) if targets else torch.empty(0, dtype=torch.long)
    if not dist_utils.is_distributed():
        return (out if out is not None else torch.empty(0, 0)), tgt
    return _interleave(dist_utils.all_gather_objects((out, tgt)))


def _evaluation_module(model: nn.Module) -> nn.Module:
    """Under DDP, every rank evaluates with rank 0's buffers, broadcast explicitly, whether it is given
    the DDP wrapper or the bare module. After training each rank holds the BatchNorm statistics of its
    own last batch, and rank 0's are the ones saved; DDP's forward would broadcast them on the first
    eval batch only, a collective that hangs if a rank has no eval batch at all."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    dist_utils.broadcast_buffers(model)
    return model


def _interleave(shards: list[tuple[Tensor | None, Tensor]]) -> tuple[Tensor, Tensor]:
    """Rank r's shard holds dataset indices r, r + W, ...: put them back in dataset order. A rank
    with no sample (dataset smaller than the world) sends ``None`` logits."""
    world = len(shards)
    num_classes = next((lg.shape[1] for lg, _ in shards if lg is not None), 0)
    total = sum(tg.numel() for _, tg in shards)
    full_logits = torch.empty(total, num_classes)
    full_targets = torch.empty(total, dtype=torch.long)
    for rank, (lg, tg) in enumerate(shards):
        if lg is not None:
            full_logits[rank::world] = lg
        full_targets[rank::world] = tg
    return full_logits, full_targets


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, train_counts, many: int = 100,
             few: int = 20, logit_adjustment: Tensor | None = None,
             memory_format: torch.memory_format = torch.contiguous_format, amp: torch.dtype | None = None,
             probability_scale: float = 1.0) -> dict:
    """Metrics of ``model`` on ``loader`` (see :func:`longtail.evaluation.score_logits`: shot-group
    accuracy, top-5, ECE of softmax(``probability_scale`` * logits)). ``logit_adjustment`` (C,), if given,
    is added to the logits (post-hoc)."""
    from ..evaluation import score_logits

    logits, targets = predict(model, loader, device, memory_format, amp)
    if logit_adjustment is not None:
        logits = logits + logit_adjustment.to(logits)
    return score_logits(logits, targets, train_counts, many=many, few=few, probability_scale=probability_scale)


def compile_in_place(module: nn.Module, example: Tensor, *, log: Callable[[str], None] = print) -> bool:
    """``torch.compile`` ``module`` in place (``nn.Module.compile``: its state-dict keys stay the same, so
    checkpoints load either way) and run it once on ``example``, compiling now rather than in the first
    training step. A module that does not compile is put back to eager and ``log`` says why; returns
    whether it is compiled."""
    try:
        module.compile()
        was_training = module.training
        module.eval()
        with torch.no_grad():
            module(example)
        module.train(was_training)
        return True
    except Exception as err:  # any backend failure (no compiler, an unsupported op): train eagerly instead
        module._compiled_call_impl = None  # what nn.Module.compile set: the module calls its eager forward again
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        log(f"compile: {type(module).__name__} did not compile ({type(err).__name__}: {first_line[:200]}); "
            "training it eagerly")
        return False
