"""The `longtail` command line. Each sub-command lives in its own module; this file only parses."""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console
from rich.markup import escape

from ..config import ConfigError, TrainConfig, describe_keys

err_console = Console(stderr=True, highlight=False)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model from a YAML config",
                       description="Train one model. Example: longtail train configs/fashion_mnist_lt/balanced_softmax.yaml "
                                   "seed=1 epochs=10. Under torchrun the same command runs with DDP.")
    p.add_argument("config", nargs="?", help="YAML config (configs/<dataset>/<method>.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of config keys (YAML values)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run directory from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run of the same name and start again")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--list-keys", action="store_true", help="list the config keys and their defaults, then exit")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run directory or checkpoint on its test (or val) split")
    p.add_argument("target", help="run directory (uses best.pt) or a .pt checkpoint inside one")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--features", action="store_true",
                   help="also save the backbone features of the split (what `longtail posthoc` tau-norm reads)")
    p.add_argument("--data-root", default=None, metavar="PATH",
                   help="score on the data at PATH instead of the run's own data_root (the data moved, or another "
                        "copy of the same dataset); reports then go to RUN/eval_on/<name>-<hash>/")
    moved = ("rarely needed: a run records its classes and test pipeline in metrics.json ('inputs'); a run without "
             "that record (trained before it existed) rebuilds them from its dataset, at PATH if it moved")
    p = sub.add_parser("predict", help="apply a run to new images: top-k CSV, logits, unreadable files reported")
    p.add_argument("target", help="run directory (uses best.pt) or a .pt checkpoint inside one")
    p.add_argument("inputs", nargs="+", help="image files, folders (recursive) or split lists (path [label] lines)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/predictions)")
    p.add_argument("--root", default=None, help="folder the split lists' paths are relative to (default: the list's)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--prior", default="uniform", help="test-time class prior added as log pi: uniform (default), "
                   "train (the training counts) or a JSON file of C weights")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None, metavar="PATH", help=moved)
    p = sub.add_parser("export", help="a run's model as a plain state dict, TorchScript and a JSON card")
    p.add_argument("target", help="run directory (uses best.pt) or a .pt checkpoint inside one")
    p.add_argument("--out", default=None, help="output folder (default: RUN/export)")
    p.add_argument("--data-root", default=None, metavar="PATH", help=moved)


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="dataset tools")
    dsub = p.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("stats", help="class-count table, shot groups and histogram of a dataset's training split")
    s.add_argument("dataset", help="dataset name (e.g. fashion_mnist_lt) or a YAML config")
    s.add_argument("overrides", nargs="*", help="key=value dataset options (imbalance_factor=200, data_root=...)")
    s.add_argument("--plot", help="save the histogram to this PNG")
    c = dsub.add_parser("check", help="report how many and which images of a file-based dataset are missing or "
                        "unreadable (exit status 1 if any)")
    c.add_argument("dataset", help="dataset name (places_lt, imagenet_lt, inat2018, image_folder) or a YAML config")
    c.add_argument("overrides", nargs="*", help="key=value options (data_root=..., 'dataset_options={split_dir: ...}')")
    c.add_argument("--workers", type=int, default=None, help="decoding processes (default: min(8, CPU count))")
    c.add_argument("--exists-only", action="store_true", help="only look for missing files (fast, decodes nothing)")
    c.add_argument("--limit", type=int, default=10, help="list at most this many problem files per split and kind")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job: methods side by side on Fashion-MNIST-LT (IF 100)")
    p.add_argument("--output-dir", default="runs/demo")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds to average over (default 0 1 2: about 8 minutes on 2 CPU cores)")
    p.add_argument("--epochs", type=int, default=None, help="override the configs' epochs (quick try: 3)")
    p.add_argument("--configs", default=None, help="folder of the demo configs (default: configs/fashion_mnist_lt)")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every run")


def _add_detect(sub) -> None:
    p = sub.add_parser("detect", help="long-tailed detection (LVIS and COCO-LT): train, eval, compare heads",
                       description="Faster/Mask R-CNN with softmax, BAGS, Balanced Softmax and BALMS heads.")
    dsub = p.add_subparsers(dest="detect_command", required=True)
    t = dsub.add_parser("train", help="train a detector (stage 1) or its classifier (stage 2, init_from=RUN)")
    t.add_argument("config", nargs="?", help="YAML config (configs/detection/*.yaml)")
    t.add_argument("overrides", nargs="*", help="key=value overrides of config keys (YAML values)")
    t.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="discard an existing run of the same name")
    t.add_argument("--quiet", action="store_true", help="print nothing but errors")
    t.add_argument("--list-keys", action="store_true", help="list the config keys and their defaults, then exit")
    e = dsub.add_parser("eval", help="re-evaluate a finished detection run on its val (or test) json")
    e.add_argument("run", help="run directory (config.yaml + model.pt)")
    e.add_argument("--split", choices=("val", "test"), default="val", help="which json (default: val)")
    e.add_argument("--test-json", default=None, help="test json for a run trained without one")
    e.add_argument("--save", action="store_true", help="store the metrics in the run's metrics.json")
    e.add_argument("--max-dets", type=int, default=None,
                   help="detections kept per image over all classes (LVIS protocol: 300; default: the run's)")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    c = dsub.add_parser("compare", help="AP / APr / APc / APf side by side: a suite YAML (trains what is missing) "
                                        "or finished run directories")
    c.add_argument("targets", nargs="+",
                   help="configs/detection/suite_*.yaml [key=value ...] (overrides of every run), or run directories")
    c.add_argument("--set", dest="overrides", action="append", default=[],
                   help="key=value override applied to every run of a suite (repeatable; same as a key=value target)")
    c.add_argument("--json-out", help="also write the table as JSON here")
    c.add_argument("--split", choices=("val", "test"), default=None,
                   help="for run directories: the split to tabulate (default: test when every run has it)")
    c.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    _add_make_data(dsub)
    _add_coco_lt(dsub)


def _add_make_data(sub) -> None:
    from ..workflows.detect_data import PRESET_NAMES  # (a constant: the generator itself is not imported)

    p = sub.add_parser("make-data", help="write an embedded benchmark (Fashion-MNIST items on canvases): LVIS or COCO-LT",
                       description="Write OUT/lvis_train.json, OUT/lvis_val.json, OUT/lvis_test.json and the images "
                                   "under OUT/train, OUT/val and OUT/test (val for choosing settings, test for "
                                   "reporting). 120 classes whose training instance counts follow the LVIS v1 train "
                                   "profile divided by --scale. --size coco_lt (or coco_lt_ci) writes the COCO-LT "
                                   "stand-in instead: OUT/coco_lt_{train,val,test}.json in COCO format, 80 classes "
                                   "following the COCO-LT counts / --scale. Example: longtail detect make-data "
                                   "data/lvis_syn_ci --size ci")
    p.add_argument("out", help="output folder (must not hold a generated dataset yet)")
    p.add_argument("--size", choices=PRESET_NAMES, default="default",
                   help="preset: default (~12,000 train instances, for the 30-minute CPU benchmark), ci (tiny), "
                        "coco_lt (the COCO-LT stand-in, ~6,700 train instances) or coco_lt_ci (tiny)")
    p.add_argument("--scale", type=float, default=None,
                   help="divide the real instance counts by this (presets: 10 default, 60 ci, 100 coco_lt, 800 coco_lt_ci)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same files")
    p.add_argument("--data-root", default=None, help="folder holding (or receiving) Fashion-MNIST "
                                                     "(default: $LONGTAIL_DATA or ./data)")


def _add_coco_lt(sub) -> None:
    p = sub.add_parser("coco-lt", help="write the COCO-LT training json from COCO's instances_train2017.json",
                       description="Keep, for each COCO category, its annotations in the COCO train2017 images the "
                                   "COCO-LT list (Wang et al., ECCV 2020; shipped with longtail) gives for it, check "
                                   "every category's kept instance count against the list, and write the json. "
                                   "Evaluation uses the full val2017.")
    p.add_argument("instances", help="COCO's annotations/instances_train2017.json")
    p.add_argument("--out", default="data/coco_lt/coco_lt_train.json", help="where to write (default: %(default)s)")
    p.add_argument("--list", dest="split_list", default=None,
                   help="another class/image list in the same format (default: the shipped COCO-LT list)")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="methods x imbalance factors x seeds from a suite YAML, with tables and plots",
                       description="Run (or continue) a benchmark suite, e.g. longtail bench configs/suites/ci.yaml. "
                                   "Finished runs are skipped and interrupted ones resumed; results.md/.csv/.json and "
                                   "plots are written into the suite's output folder.")
    p.add_argument("suite", help="suite YAML (configs/suites/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every training run (e.g. device=cuda)")
    p.add_argument("--output-dir", default=None, help="where runs and results go (default: the suite's output_dir)")
    p.add_argument("--report-only", action="store_true", help="only rewrite tables and plots from finished runs")
    p.add_argument("--status", action="store_true",
                   help="only show where every run stands (finished, running, interrupted at epoch k, to run) and "
                        "the training time left; reads the run directories, safe beside running slices")
    p.add_argument("--verbose", action="store_true", help="print every epoch of every run")
    p.add_argument("--imbalance-factors", type=float, nargs="+", default=None, metavar="IF",
                   help="train only this slice of the grid (the report still covers every finished run); "
                        "slices can run in parallel, e.g. one process per core")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED", help="train only these seeds")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N runs at a time, each in its own process (e.g. one per CPU core with threads=1); "
                        "a stage-2 or post-hoc run starts once its stage-1 run has finished")


def _add_posthoc(sub) -> None:
    p = sub.add_parser("posthoc", help="post-hoc logit adjustment or tau-normalisation of a finished run, tau on val",
                       description="Example: longtail posthoc configs/fashion_mnist_lt/tau_norm.yaml from_run=runs/ce")
    p.add_argument("config", help="posthoc YAML (method: tau_norm | logit_adjust), or key=value only")
    p.add_argument("overrides", nargs="*", help="key=value overrides (from_run=..., name=..., tau=1.0; "
                                                "data_root=... where the stage-1 run's data moved)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace another post-hoc run of the same name (a trained run is never replaced)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


# The errors that say what is wrong with the user's input or files (one line, exit 2, no traceback), by module.
EXPECTED_ERRORS = {"longtail.config": ("ConfigError",), "longtail.data.sources": ("DatasetNotFoundError",),
                   "longtail.data.split_file": ("ImageLoadError",), "longtail.engine.checkpoint": ("CheckpointError",),
                   "longtail.engine.loop": ("NonFiniteLossError",), "longtail.engine.run_dir": ("RunDirInUseError",)}


def expected_errors() -> tuple[type[BaseException], ...]:
    """The classes of :data:`EXPECTED_ERRORS` whose modules are loaded. Most import torch (3-4 s), which `--help`,
    `--list-keys` and a mistyped config path never need; an error whose module was never imported cannot have
    been raised, so the ``except`` clause need not import it."""
    return (FileNotFoundError, *(getattr(sys.modules[module], name) for module, names in EXPECTED_ERRORS.items()
                                 if module in sys.modules for name in names))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longtail", description="Long-tailed visual recognition: train, evaluate and "
                                     "compare Balanced Softmax, BALMS, BAGS and the baselines.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_eval(sub)
    _add_data(sub)
    _add_demo(sub)
    _add_detect(sub)
    _add_bench(sub)
    _add_posthoc(sub)
    return parser


NUMBER_LISTS = ("--seeds", "--imbalance-factors")  # options taking one or more numbers


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def overrides_out_of_number_lists(argv: list[str]) -> list[str]:
    """``bench SUITE --seeds 0 1 lr=0.1``: argparse would read ``lr=0.1`` as a third seed and fail; the key=value
    words that follow a number list are moved in front of the first such option, where they are overrides."""
    words, moved, first = [], [], None
    i = 0
    while i < len(argv):
        words.append(argv[i])
        if argv[i] in NUMBER_LISTS:
            first = len(words) - 1 if first is None else first
            i += 1
            while i < len(argv) and _is_number(argv[i]):
                words.append(argv[i])
                i += 1
            while i < len(argv) and "=" in argv[i] and not argv[i].startswith("-"):
                moved.append(argv[i])
                i += 1
            continue
        i += 1
    return words if first is None else words[:first] + moved + words[first:]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """argparse stops collecting positionals at the first option, so in ``train CONFIG --resume
    epochs=5`` the override would be "unrecognized"; key=value words left over are overrides too."""
    parser = build_parser()
    argv = overrides_out_of_number_lists(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        if any(a.startswith("-") or "=" not in a for a in extra) or not isinstance(getattr(args, "overrides", None), list):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args


def run_detect_command(args) -> None:
    """Dispatch of `longtail detect train | eval | compare`."""
    from ..config import DetectConfig, load_config

    if args.detect_command == "train":
        if args.list_keys:
            print(describe_keys(DetectConfig))
            return
        if args.config is None:
            raise ConfigError("give a config file, e.g. longtail detect train configs/detection/embedded_stage1.yaml")
        config, overrides = args.config, list(args.overrides)
        if "=" in config:  # no file, only overrides
            overrides, config = [config] + overrides, None
        cfg = load_config(DetectConfig, config, overrides)  # a bad file or key is reported before torch loads
        from ..workflows.detect import run_detection_training
        run_detection_training(cfg, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
    elif args.detect_command == "eval":
        from ..workflows.detect import run_detection_eval
        run_detection_eval(args.run, split=args.split, test_json=args.test_json, max_dets=args.max_dets,
                           device=args.device, as_json=args.json, save=args.save)
    elif args.detect_command == "compare":
        from ..workflows.detect_suite import run_compare

        run_compare(args.targets, overrides=args.overrides, quiet=args.quiet, json_out=args.json_out, split=args.split)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "train":
            if args.list_keys:
                print(describe_keys(TrainConfig))
                return 0
            if args.config is None:
                raise ConfigError("give a config file, e.g. longtail train configs/fashion_mnist_lt/ce.yaml")
            from ..config import load_config
            config = args.config
            overrides = list(args.overrides)
            if "=" in config:  # no file, only overrides
                overrides, config = [config] + overrides, None
            cfg = load_config(TrainConfig, config, overrides)  # a bad file or key is reported before torch loads
            from ..workflows.train import run_training
            run_training(cfg, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
        elif args.command == "eval":
            from ..workflows.evaluate import run_eval
            run_eval(args.target, split=args.split, device=args.device, as_json=args.json, features=args.features,
                     data_root=args.data_root)
        elif args.command == "predict":
            from ..workflows.predict import run_predict
            run_predict(args.target, args.inputs, out=args.out, root=args.root, top_k=args.top_k, prior=args.prior,
                        batch_size=args.batch_size, device=args.device, data_root=args.data_root)
        elif args.command == "export":
            from ..workflows.export import run_export
            run_export(args.target, args.out, data_root=args.data_root)
        elif args.command == "data":
            from ..workflows.data import run_check, run_stats
            if args.data_command == "check":
                report = run_check(args.dataset, args.overrides, workers=args.workers, exists_only=args.exists_only,
                                   limit=args.limit)
                return 0 if report["ok"] else 1
            run_stats(args.dataset, args.overrides, plot=args.plot)
        elif args.command == "detect" and args.detect_command == "make-data":
            from ..workflows.detect_data import run_make_data
            run_make_data(args)
        elif args.command == "detect" and args.detect_command == "coco-lt":
            from ..workflows.detect_data import run_coco_lt
            run_coco_lt(args.instances, args.out, args.split_list)
        elif args.command == "detect":
            run_detect_command(args)
        elif args.command == "bench" and args.status:
            from ..workflows.bench_status import print_status
            print_status(args.suite, output_dir=args.output_dir, overrides=tuple(args.overrides))
        elif args.command == "bench":
            from ..workflows.bench import run_bench
            summary = run_bench(args.suite, output_dir=args.output_dir, overrides=tuple(args.overrides),
                                verbose=args.verbose, report_only=args.report_only,
                                only_factors=args.imbalance_factors, only_seeds=args.seeds, jobs=args.jobs)
            return 1 if summary["failed"] else 0
        elif args.command == "posthoc":
            from ..config import PosthocConfig, load_config
            config, overrides = args.config, list(args.overrides)
            if "=" in config:  # no file, only overrides
                overrides, config = [config] + overrides, None
            cfg = load_config(PosthocConfig, config, overrides)  # a bad file or key is reported before torch loads
            from ..workflows.posthoc import run_posthoc
            run_posthoc(cfg, quiet=args.quiet, overwrite=args.overwrite)
        elif args.command == "demo":
            from ..workflows.demo import run_demo
            run_demo(args.output_dir, seeds=args.seeds, epochs=args.epochs, configs=args.configs,
                     overrides=args.overrides)
        return 0
    except expected_errors() as err:
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)  # no hard wraps inside paths
        return 2
    except (ValueError, KeyError) as err:
        # Bad input found deeper in the library (a malformed split list, counts with a zero, ...): the
        # message says what is wrong; LONGTAIL_DEBUG=1 shows the traceback for bug reports.
        if os.environ.get("LONGTAIL_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        err_console.print(f"[bold red]error:[/] {escape(str(message))}  (LONGTAIL_DEBUG=1 for the traceback)", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        again = ("run the same command again" if args.command in ("bench", "demo")
                 or getattr(args, "detect_command", None) == "compare" else "continue with --resume")
        err_console.print(f"interrupted; the last complete checkpoint is kept ({again})")
        return 130
    except BrokenPipeError:  # `longtail ... | head` closed the pipe: nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # anything else: still one line and exit 2; the traceback on request
        if os.environ.get("LONGTAIL_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {escape(type(err).__name__)}: {escape(str(err))}  (unexpected: "
                          "LONGTAIL_DEBUG=1 shows the traceback; please report it)", soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
