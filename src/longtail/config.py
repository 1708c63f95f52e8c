"""Every config key, declared once: a flat dataclass per kind of run (classification training, detection
training, post-hoc correction), loaded from a YAML file plus ``key=value`` overrides. Unknown keys are
errors that name the key and suggest the closest one. ``None`` means "keep the library default".
Each class also says which keys may change without changing what a run computes (``NOT_COMPUTED_KEYS``:
--resume and a suite's reuse of a finished run allow them to differ)."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import yaml


class ConfigError(ValueError):
    pass


@dataclass
class TrainConfig:
    # What each key means for a run, declared once (resume, stage 2 and `longtail bench` read these):
    # the keys that fix the data split (stage 2 must train on the split stage 1 trained on), and the keys
    # that do not change what is computed (so --resume and a finished run's reuse by a suite allow them
    # to differ).
    SPLIT_KEYS: ClassVar[tuple[str, ...]] = ("dataset", "imbalance_factor", "n_max", "profile", "val_per_class",
                                             "seed", "dataset_options")
    NOT_COMPUTED_KEYS: ClassVar[tuple[str, ...]] = ("device", "eval_batch_size", "output_dir", "data_root", "threads",
                                                    "num_workers", "persistent_workers")

    # --- run ---
    name: Optional[str] = None  # run directory name (default: the config file's stem)
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    num_workers: int = 0
    persistent_workers: bool = False  # keep loader workers across epochs (GPU speed; resume is then not bit-exact)
    threads: Optional[int] = None  # torch intra-op threads (default: torch's choice, recorded in metrics.json)
    channels_last: bool = False  # model and batches in channels_last memory format (faster convolutions on CPU)
    amp: Optional[str] = None  # mixed-precision training: bf16 | fp16 (GradScaler); null = float32; the test pass stays float32
    compile: bool = False  # torch.compile the trained model (eager, with a message, when it does not compile)
    # --- data ---
    dataset: str = "fashion_mnist_lt"
    data_root: Optional[str] = None  # default: $LONGTAIL_DATA or ./data
    imbalance_factor: Optional[float] = None
    n_max: Optional[int] = None
    profile: Optional[str] = None  # exp | step
    val_per_class: Optional[int] = None
    download: Optional[bool] = None
    augment: Optional[bool] = None
    dataset_options: dict = field(default_factory=dict)  # further options of the dataset factory
    # --- model ---
    model: str = "resnet8_small"
    model_options: dict = field(default_factory=dict)
    # --- method ---
    loss: str = "ce"
    loss_options: dict = field(default_factory=dict)
    sampler: str = "random"
    sampler_options: dict = field(default_factory=dict)
    mix: Optional[str] = None  # mixup | cutmix | mixup_cutmix | remix: batches mixed, soft targets (stage 1 only)
    mix_alpha: float = 1.0  # lambda ~ Beta(alpha, alpha)
    remix_kappa: float = 3.0  # ReMix: count ratio from which the label goes to the minority class
    remix_tau: float = 0.5  # ReMix: the mixing weight below which it does
    # --- optimisation ---
    epochs: int = 30
    batch_size: int = 128  # per process
    optimizer: str = "sgd"  # sgd | adamw (momentum / nesterov apply to sgd)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    backbone_lr: Optional[float] = None  # a separate lr for the backbone (fine-tuning: small backbone, large head lr)
    backbone_weight_decay: Optional[float] = None  # a separate weight decay for the backbone
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.5
    lr_schedule: str = "cosine"  # cosine: after the warm-up, cosine to 0 (BALMS) | step: x lr_gamma at each of lr_milestones
    lr_milestones: list = field(default_factory=list)  # epochs from which lr_schedule: step multiplies the lr by lr_gamma
    lr_gamma: float = 0.1  # lr_schedule: step's factor per milestone (LDAM-DRW CIFAR code: 0.01 at [160, 180])
    max_grad_norm: Optional[float] = None
    # --- evaluation ---
    select_on: str = "val"  # val: keep the checkpoint with best val mean per-class accuracy; last: the last epoch
    many_threshold: int = 100
    few_threshold: int = 20
    eval_batch_size: int = 512
    eval_every: int = 1  # validate every k epochs (and always after the last one)
    # --- classifier head ---
    head: str = "linear"  # linear | cosine (the normalised head LDAM's margins assume) | lws (stage 2, LWS)
    # --- decoupled stage 2 (BALMS, cRT) ---
    init_from: Optional[str] = None  # stage-1 run directory (its best.pt) or checkpoint file; set = stage 2
    freeze_bn: bool = True  # frozen backbone in eval mode, BatchNorm statistics fixed (false: the official code)
    allow_split_mismatch: bool = False  # stage 2 from weights whose data split cannot be checked / differs
    reinit_head: bool = True  # fresh classifier (false: keep the stage-1 head, e.g. for tau-norm / LWS)
    cache_features: bool = False  # train the head on features computed once per augmented view
    cache_views: Optional[int] = None  # augmented views to cache (default: one per epoch; 1: a single view)
    # --- meta sampler (sampler: meta; BALMS) ---
    meta_set: str = "val"  # val: the balanced held-out split | train: class-balanced stream from train (paper CIFAR)
    meta_lr: float = 0.01  # Adam on the per-class sampling logits (paper: 0.01 CIFAR, 0.001 ImageNet/Places-LT)
    meta_init_pow: float = 0.0  # 0 instance-balanced ... 1 class-balanced start (paper: 0 / 0.1 / 0.3)
    meta_batch_size: Optional[int] = None  # meta batch per process (default: batch_size)


@dataclass
class DetectConfig:
    # keys that change where a run lives or how it is evaluated, not what it learns: --resume and a suite's
    # reuse of a finished run allow them to differ (a missing test evaluation is added)
    NOT_COMPUTED_KEYS: ClassVar[tuple[str, ...]] = ("name", "output_dir", "test_json", "test_image_root", "device",
                                                    "num_workers", "num_threads", "eval_batch_size")

    # --- run ---
    name: Optional[str] = None  # run directory name (default: the config file's stem)
    output_dir: str = "runs/detection"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    num_workers: int = 0
    num_threads: Optional[int] = None  # torch CPU threads (1 is fastest on a busy 2-core machine)
    amp: Optional[str] = None  # mixed-precision training: bf16 | fp16 (GradScaler); evaluation stays float32
    # --- data (LVIS- or COCO-format json; image paths relative to image_root, default: the json's folder) ---
    dataset_format: str = "lvis"  # lvis (federated LVIS evaluation, APr/APc/APf) | coco (COCO evaluation, AP1..AP4)
    train_json: Optional[str] = None
    val_json: Optional[str] = None
    image_root: Optional[str] = None
    val_image_root: Optional[str] = None
    test_json: Optional[str] = None  # held-out split for reporting; val is then only for choosing settings
    test_image_root: Optional[str] = None
    repeat_threshold: Optional[float] = None  # repeat-factor sampling t (LVIS: 0.001); null = uniform
    # image frequencies (sigmoid Balanced Softmax f_j, repeat factors f(c)) over the images that have annotations
    # (official BALMS code, detectron2) or over every listed image ("all")
    frequency_images: str = "annotated"
    max_val_images: Optional[int] = None  # evaluate on the first N val images only (quick runs)
    # --- model ---
    arch: str = "fasterrcnn"  # fasterrcnn | maskrcnn
    backbone: str = "small"  # small | resnet50_fpn
    head: str = "softmax"  # softmax | bags | balanced_softmax | balms | sigmoid
    head_options: dict = field(default_factory=dict)  # e.g. {bin_edges: [10, 100, 1000], others_ratio: 8}
    detector_options: dict = field(default_factory=dict)  # torchvision FasterRCNN/MaskRCNN kwargs (min_size ...)
    weights_path: Optional[str] = None  # local detector weights to start from (class layers skipped)
    backbone_weights_path: Optional[str] = None  # local ImageNet ResNet-50 weights (resnet50_fpn)
    # --- decoupled stage 2 ---
    init_from: Optional[str] = None  # stage-1 run dir or .pt: re-create the class logits, freeze the rest
    meta_lr: float = 0.01  # Adam lr of the Meta Reweighter (head balms)
    # --- optimisation ---
    epochs: int = 12
    batch_size: int = 4
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: list = field(default_factory=list)  # epochs after which lr is multiplied by 0.1 (BAGS: [8, 11])
    warmup_iters: int = 0  # linear warm-up from 0.001 x lr
    max_grad_norm: Optional[float] = None
    # --- evaluation ---
    eval_batch_size: int = 8
    max_dets: Optional[int] = None  # detections per image evaluated (default: LVIS 300, COCO 100)
    ap_bin_edges: list = field(default_factory=lambda: [20, 400, 8000])  # COCO: AP1..AP4 bins of training count


@dataclass
class PosthocConfig:
    NOT_COMPUTED_KEYS: ClassVar[tuple[str, ...]] = ("device", "eval_batch_size", "output_dir", "data_root")

    # --- run ---
    name: Optional[str] = None  # run directory name (default: the config file's stem)
    output_dir: str = "runs"
    from_run: Optional[str] = None  # the finished stage-1 run directory (its best.pt is used)
    data_root: Optional[str] = None  # the stage-1 run's dataset at another path (it moved); default: the run's own
    device: str = "auto"
    eval_batch_size: int = 512
    # --- method ---
    method: str = "tau_norm"  # logit_adjust | tau_norm
    tau: Optional[float] = None  # fixed tau; None: the best on val over tau_min, tau_min + tau_step, ..., tau_max
    tau_min: float = 0.0
    tau_max: float = 2.0
    tau_step: float = 0.1


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(cls, key: str, value: Any) -> Any:
    hint = _field_types(cls)[key]
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{key} may not be null")
    for t in allowed:
        if t is type(None):
            continue
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t in (str, dict, list) and isinstance(value, t):
            return value
    names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
    raise ConfigError(f"{key} must be {names}, got {value!r} ({type(value).__name__})")


# the command that lists a config class's keys; classes without one get their keys in the message
_LIST_KEYS_COMMAND = {"TrainConfig": "longtail train --list-keys", "DetectConfig": "longtail detect train --list-keys"}


def _check_keys(cls, keys, source: str) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            command = _LIST_KEYS_COMMAND.get(cls.__name__)
            more = f"Run `{command}` for the known keys." if command else f"Known keys: {', '.join(known)}."
            raise ConfigError(f"unknown config key {key!r} in {source}.{hint} {more}")


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["lr=0.05", "loss=balanced_softmax", "loss_options={tau: 1.5}"]`` -> dict (YAML values)."""
    out = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. lr=0.05)")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise ConfigError(f"cannot parse the value of override {item!r}: {err}") from err
    return out


def read_yaml_mapping(path: Path, missing_hint: str) -> dict[str, Any]:
    """The mapping in a YAML file, or a ConfigError saying what is wrong (missing, not YAML, not a mapping)."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a YAML file in it (e.g. {path}/<name>.yaml; {missing_hint})")
    if not path.is_file():
        raise ConfigError(f"{path} does not exist ({missing_hint})")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of key: value, got {type(loaded).__name__}")
    return loaded


def load_config(cls, path: str | Path | None, overrides: list[str] | None = None):
    """Build ``cls`` from a YAML file (or defaults when ``path`` is None) and overrides."""
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        loaded = read_yaml_mapping(path, "configs live under configs/<dataset>/")
        _check_keys(cls, loaded, str(path))
        values.update(loaded)
        source = str(path)
        if "name" in {f.name for f in dataclasses.fields(cls)}:
            values.setdefault("name", path.stem)
    extra = parse_overrides(overrides or [])
    _check_keys(cls, extra, "the command-line overrides")
    values.update(extra)
    coerced = {}
    for k, v in values.items():
        try:
            coerced[k] = _coerce(cls, k, v)
        except ConfigError as err:  # name where the bad value came from: the override wins over the file
            where = f"the command-line override {k}=..." if k in extra else source
            raise ConfigError(f"{where}: {err}") from None
    return cls(**coerced)


def to_dict(config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def changed_settings(saved: dict[str, Any], current: dict[str, Any], may_change: tuple[str, ...]) -> str:
    """The one rule for continuing or reusing a run: every key both configs hold must be equal, except
    ``may_change`` (a config class's ``NOT_COMPUTED_KEYS``). Returns "key: old -> new, ..." ('' if none)."""
    changed = sorted(k for k in saved.keys() & current.keys() if k not in may_change and saved[k] != current[k])
    return ", ".join(f"{k}: {saved[k]!r} -> {current[k]!r}" for k in changed)


def _key_comments(cls) -> dict[str, str]:
    """The comment after each field in the class source (``lr: float = 0.1  # ...``), the keys' help."""
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found = re.findall(r"^\s+(\w+): [^#\n]*#\s*(.+)$", source, flags=re.M)
    return {name: text.strip() for name, text in found}


def describe_keys(cls) -> str:
    comments = _key_comments(cls)
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        note = f"  {comments[f.name]}" if f.name in comments else ""
        lines.append(f"  {f.name:<22} default {default!r:<18}{note}".rstrip())
    return "\n".join(lines)
