"""Config -> objects. The only module that reads a TrainConfig and calls library constructors."""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch.utils.data import DataLoader

from ..config import ConfigError, TrainConfig
from ..data import DATASETS, LongTailedData, build_dataset, loaders
from ..data.mixing import batch_mixer
from ..engine.distributed import DistInfo
from ..engine.schedule import warmup_cosine, warmup_step
from ..losses import LOSSES, create_loss
from ..models import create_model, model_factory
from ..models.heads import create_head
from ..registry import non_bool_flags
from ..samplers import SAMPLERS, create_sampler


def check_options(kind: str, name: str, factory: Callable, options: dict, reserved: tuple[str, ...] = ()) -> None:
    """Options in ``*_options`` must be keyword arguments of the factory: a typo is an error."""
    params = inspect.signature(factory).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return  # the options go on to a constructor that checks them itself (timm / torchvision models)
    takes = sorted(k for k, p in params.items()
                   if k not in reserved and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    unknown = [k for k in options if k not in takes]
    if unknown:
        glued = [k for k in unknown if ":" in str(k)]
        hint = (f" (YAML reads {{{glued[0]}}} as one key with no value: put a space after the colon, "
                f"{{{glued[0].replace(':', ': ', 1)}}})" if glued else "")
        raise ConfigError(f"{kind} {name!r} does not take option(s) {unknown}; it takes {takes}{hint}")
    wrong = non_bool_flags(factory, options)
    if wrong:
        raise ConfigError(f"{kind} {name!r}: {', '.join(wrong)} must be true or false")


def build_data(cfg: TrainConfig) -> LongTailedData:
    options = dict(root=cfg.data_root, imbalance_factor=cfg.imbalance_factor, n_max=cfg.n_max, profile=cfg.profile,
                   val_per_class=cfg.val_per_class, download=cfg.download, augment=cfg.augment, seed=cfg.seed)
    overlap = set(options) & set(cfg.dataset_options)
    if overlap:
        raise ConfigError(f"dataset_options repeats top-level key(s) {sorted(overlap)}; set them at top level")
    if cfg.dataset in DATASETS:  # an unknown name is reported below, with the known ones
        # every key, even one whose value is empty (build_dataset passes those over as "keep the default")
        check_options("dataset", cfg.dataset, DATASETS.get(cfg.dataset), cfg.dataset_options, reserved=tuple(options))
    try:
        return build_dataset(cfg.dataset, **options, **cfg.dataset_options)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    except ValueError as err:
        if "does not take option" in str(err) or "must be true or false" in str(err):
            raise ConfigError(str(err)) from None
        raise


def build_model(cfg: TrainConfig, data: LongTailedData) -> torch.nn.Module:
    try:
        factory = model_factory(cfg.model)
    except KeyError as err:
        raise ConfigError(f"{err.args[0]} (or timm/<name>, torchvision/<name>)") from None
    check_options("model", cfg.model, factory, cfg.model_options, reserved=("num_classes", "in_channels"))
    try:
        model = create_model(cfg.model, data.num_classes, data.in_channels, **cfg.model_options)
    except TypeError as err:  # an option the timm / torchvision constructor does not take
        raise ConfigError(f"model {cfg.model}: model_options {sorted(cfg.model_options)}: {err}") from None
    if cfg.head == "lws" and not (cfg.init_from and not cfg.reinit_head):
        raise ConfigError("head: lws rescales a trained stage-1 head: set init_from=<stage-1 run directory> and "
                          "reinit_head: false (see configs/fashion_mnist_lt/lws.yaml)")
    if cfg.head != "linear":
        try:
            model.reset_head(create_head(cfg.head, model.feature_dim, model.num_classes))
        except KeyError as err:
            raise ConfigError(str(err.args[0])) from None
    return model


def build_loss(cfg: TrainConfig, data: LongTailedData) -> torch.nn.Module:
    try:
        factory = LOSSES.get(cfg.loss)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    check_options("loss", cfg.loss, factory, cfg.loss_options, reserved=("class_counts",))
    return create_loss(cfg.loss, data.class_counts, **cfg.loss_options)


def probability_scale(cfg: TrainConfig, data: LongTailedData) -> float:
    """The run's class probabilities are softmax(scale * logits): its loss's ``probability_scale`` (LDAM: s)."""
    return float(getattr(build_loss(cfg, data), "probability_scale", 1.0))


def build_sampler(cfg: TrainConfig, data: LongTailedData, dist: DistInfo):
    try:
        factory = SAMPLERS.get(cfg.sampler)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    check_options("sampler", cfg.sampler, factory, cfg.sampler_options,
                  reserved=("labels", "num_replicas", "rank", "seed", "total_epochs"))
    # a sampler scheduled over the run (progressively-balanced) gets the run's length from `epochs`
    schedule = {"total_epochs": cfg.epochs} if "total_epochs" in inspect.signature(factory).parameters else {}
    return create_sampler(cfg.sampler, data.train_labels, num_replicas=dist.world_size, rank=dist.rank,
                          seed=cfg.seed, **schedule, **cfg.sampler_options)


def eval_loader(dataset, cfg: TrainConfig, dist: DistInfo) -> DataLoader:
    return loaders.eval_loader(dataset, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers, device=dist.device,
                               world_size=dist.world_size, rank=dist.rank)


def train_loader(dataset, sampler, cfg: TrainConfig, dist: DistInfo) -> DataLoader:
    return loaders.train_loader(dataset, sampler, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                device=dist.device, persistent_workers=cfg.persistent_workers)


OPTIMIZERS = ("sgd", "adamw")


def build_optimizer(cfg: TrainConfig, trained: torch.nn.Module, *, stage2: bool = False) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov) or AdamW over the trainable parameters of ``trained``. With
    ``backbone_lr`` / ``backbone_weight_decay`` a model's backbone gets its own parameter group (the
    fine-tuning recipes of Places-LT / ImageNet-LT: small backbone lr, large classifier lr); the head's
    group comes first, so ``param_groups[0]["lr"]`` is ``lr``."""
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {list(OPTIMIZERS)}, got {cfg.optimizer!r}")
    if cfg.optimizer != "sgd" and cfg.sampler == "meta":
        raise ConfigError("the Meta Sampler's look-ahead replicates an SGD step (Ren et al. 2020, Eq. 9); "
                          f"optimizer: {cfg.optimizer} cannot be mirrored: use optimizer: sgd with sampler: meta")
    split = cfg.backbone_lr is not None or cfg.backbone_weight_decay is not None
    if split and stage2:
        raise ConfigError("backbone_lr / backbone_weight_decay are set, but stage 2 (init_from) freezes the backbone; "
                          "remove them")
    if split and not (hasattr(trained, "backbone") and hasattr(trained, "head")):
        raise ConfigError("backbone_lr / backbone_weight_decay need a model with a backbone and a head")
    if split:
        head = [p for p in trained.head.parameters() if p.requires_grad]
        backbone = [p for p in trained.backbone.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
                  {"params": backbone, "lr": cfg.backbone_lr if cfg.backbone_lr is not None else cfg.lr,
                   "weight_decay": cfg.backbone_weight_decay if cfg.backbone_weight_decay is not None
                   else cfg.weight_decay}]
    else:
        groups = [{"params": list(trained.parameters())}]  # frozen ones get no gradient, so no step
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov)


LR_SCHEDULES = ("cosine", "step")


def check_schedule(cfg: TrainConfig) -> None:
    """The lr-schedule keys, checked before any data is built (a clear error names the key and a fix)."""
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
    if cfg.lr_schedule == "cosine":
        if cfg.lr_milestones:
            raise ConfigError(f"lr_milestones {cfg.lr_milestones} are the steps of lr_schedule: step, and this run's "
                              "schedule is cosine: set lr_schedule=step, or remove lr_milestones")
        return
    milestones = cfg.lr_milestones
    if (not milestones or not all(isinstance(m, int) and not isinstance(m, bool) for m in milestones)
            or sorted(set(milestones)) != milestones or not cfg.warmup_epochs <= milestones[0] <= milestones[-1] < cfg.epochs):
        raise ConfigError(f"lr_schedule: step needs lr_milestones, increasing whole epochs from the end of the warm-up "
                          f"({cfg.warmup_epochs}) to before the last epoch ({cfg.epochs}), got {milestones!r}: e.g. the "
                          "LDAM-DRW code's lr_milestones=[160, 180] lr_gamma=0.01 with epochs=200")
    if not 0 < cfg.lr_gamma <= 1:
        raise ConfigError(f"lr_gamma must lie in (0, 1] (the lr's factor at each milestone), got {cfg.lr_gamma}")


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-iteration schedule: ``warmup_epochs`` of linear warm-up from ``warmup_start_factor`` x lr, then
    cosine to 0 (``lr_schedule: cosine``, the BALMS recipes) or constant with x ``lr_gamma`` from each epoch of
    ``lr_milestones`` on (``step``; the LDAM-DRW CIFAR code: 0.01 at [160, 180])."""
    check_schedule(cfg)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.lr_schedule == "cosine":
        return warmup_cosine(optimizer, cfg.epochs * steps_per_epoch, warmup, cfg.warmup_start_factor)
    return warmup_step(optimizer, [m * steps_per_epoch for m in cfg.lr_milestones], warmup, cfg.warmup_start_factor,
                       cfg.lr_gamma)


def build_mixer(cfg: TrainConfig, data: LongTailedData):
    """The batch mixing of ``cfg.mix`` (None without), checked against the rest of the run."""
    if cfg.mix is None:
        return None
    if cfg.init_from:
        raise ConfigError("mix (mixup / CutMix / ReMix) mixes images in end-to-end training; stage 2 (init_from) "
                          "trains the classifier on frozen-backbone features: remove mix")
    try:
        return batch_mixer(cfg.mix, data.class_counts, alpha=cfg.mix_alpha, kappa=cfg.remix_kappa, tau=cfg.remix_tau)
    except ValueError as err:
        raise ConfigError(str(err)) from None
