"""`longtail bench SUITE.yaml`: methods x imbalance factors x seeds, side by side.

A suite YAML names the grid; each method is a `longtail train` config (plus overrides) or a
`longtail posthoc` config, and a decoupled stage-2 / post-hoc method names the method it starts
from (``from``), whose run of the same imbalance factor and seed it uses::

    name: fashion_mnist_lt
    output_dir: runs/bench/fashion_mnist_lt
    imbalance_factors: [10, 100, 200]
    seeds: [0, 1, 2]
    overrides: [epochs=12]            # every training run
    methods:
      - {name: ce, label: CE, config: configs/fashion_mnist_lt/ce.yaml}
      - {name: tau_norm, posthoc: configs/fashion_mnist_lt/tau_norm.yaml, from: ce}
      - {name: crt, config: configs/fashion_mnist_lt/crt.yaml, from: ce, overrides: [epochs=5]}

Runs go to OUTPUT_DIR/runs/if<IF>/seed<S>/<method>. Finished runs (metrics.json ``finished``) are
skipped, interrupted ones resumed from their checkpoint, so re-running the command continues where
it stopped. Every config is built and every existing run checked against it before anything runs.
After each run the results table (results.md / .csv / .json) and plots are rewritten
(:mod:`longtail.cli.bench_report`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.markup import escape

from ..config import (
    ConfigError,
    PosthocConfig,
    TrainConfig,
    load_config,
    parse_overrides,
    read_yaml_mapping,
)
from ..engine import NonFiniteLossError
from ..engine.distributed import launched_rank
from ..engine.run_dir import RunDirInUseError
from . import bench_report
from .output import duration, make_console, percent
from .posthoc import run_posthoc
from .run_state import check_existing, estimate_seconds_left, run_status
from .suite import MethodSpec, Run, Suite, if_tag
from .train import run_training

console = make_console(soft_wrap=True)  # no hard wraps inside paths
SUITE_KEYS = ("name", "title", "output_dir", "imbalance_factors", "seeds", "overrides", "methods")
METHOD_KEYS = ("name", "label", "config", "posthoc", "from", "overrides", "seeds")


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ConfigError(f"{what} must be a list of 'key=value' strings, e.g. [epochs=10], got {value!r}")
    return tuple(value)


def _find(path_text: str, suite_path: Path) -> Path:
    """A config path as written (relative to the working directory), else relative to the repository
    that holds the suite (configs/suites/x.yaml -> the folder above configs/)."""
    path = Path(path_text)
    if path.is_file():
        return path
    for base in suite_path.resolve().parents:
        if (base / path).is_file():
            return base / path
    raise ConfigError(f"{suite_path}: config file {path_text} does not exist (paths are relative to the repository root)")


def load_suite(path: str | Path, output_dir: str | None = None) -> Suite:
    path = Path(path)
    raw = read_yaml_mapping(path, "suites live under configs/suites/")
    unknown = sorted(set(raw) - set(SUITE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown suite key(s) {unknown}; known: {list(SUITE_KEYS)}")
    factors, seeds = raw.get("imbalance_factors"), raw.get("seeds", [0])
    if not isinstance(factors, list) or not factors or not all(isinstance(f, (int, float)) and f >= 1 for f in factors):
        raise ConfigError(f"{path}: imbalance_factors must be a non-empty list of numbers >= 1, got {factors!r}")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    methods, names = [], set()
    for i, entry in enumerate(raw.get("methods") or []):
        where = f"{path}: methods[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where} must be a mapping with a name, e.g. {{name: ce, config: configs/...}}")
        bad = sorted(set(entry) - set(METHOD_KEYS))
        if bad:
            raise ConfigError(f"{where} ({entry['name']}): unknown key(s) {bad}; known: {list(METHOD_KEYS)}")
        name = entry["name"]
        if name in names:
            raise ConfigError(f"{where}: method name {name!r} is used twice")
        if ("config" in entry) == ("posthoc" in entry):
            raise ConfigError(f"{where} ({name}): give exactly one of config (a training run) or posthoc")
        stage1 = entry.get("from")
        if stage1 is not None and stage1 not in names:
            raise ConfigError(f"{where} ({name}): from: {stage1!r} must name a method listed before it")
        if "posthoc" in entry and stage1 is None:
            raise ConfigError(f"{where} ({name}): a posthoc method needs from: <the stage-1 method>")
        kind = "posthoc" if "posthoc" in entry else "train"
        own_seeds = entry.get("seeds")
        if own_seeds is not None:
            if not isinstance(own_seeds, list) or not own_seeds or not set(own_seeds) <= set(seeds):
                raise ConfigError(f"{where} ({name}): seeds must be a non-empty list drawn from the suite's seeds "
                                  f"{seeds}, got {own_seeds!r}")
            own_seeds = tuple(own_seeds)
        if stage1 is not None:
            parent = next(m for m in methods if m.name == stage1)
            if parent.seeds is not None and not set(own_seeds or seeds) <= set(parent.seeds):
                raise ConfigError(f"{where} ({name}): it runs seeds {list(own_seeds or seeds)} but its stage-1 method "
                                  f"{stage1!r} only seeds {list(parent.seeds)}; give it seeds: {list(parent.seeds)}")
        methods.append(MethodSpec(name=name, label=str(entry.get("label", name)), kind=kind, stage1=stage1,
                                  config=_find(entry["posthoc"] if kind == "posthoc" else entry["config"], path),
                                  overrides=_strings(entry.get("overrides"), f"{where} overrides"), seeds=own_seeds))
        names.add(name)
    if not methods:
        raise ConfigError(f"{path}: the suite lists no methods")
    name = str(raw.get("name", path.stem))
    return Suite(name=name, title=str(raw.get("title", name)), path=path,
                 output_dir=Path(output_dir or raw.get("output_dir") or f"runs/bench/{name}"),
                 imbalance_factors=tuple(float(f) for f in factors), seeds=tuple(seeds),
                 overrides=_strings(raw.get("overrides"), f"{path}: overrides"), methods=tuple(methods))


def plan(suite: Suite, extra_overrides: tuple[str, ...] = ()) -> list[Run]:
    """Every run of the grid, seed-major (so partial results cover every setting early), each with
    its resolved config; a bad config or option is an error here, before anything trains."""
    runs = []
    # a posthoc run reads its stage-1 run's data; where the command moves the data, it follows
    posthoc_data = [o for o in (*suite.overrides, *extra_overrides) if o.split("=", 1)[0].strip() == "data_root"]
    for seed in suite.seeds:
        for factor in suite.imbalance_factors:
            cell = suite.output_dir / "runs" / f"if{if_tag(factor)}" / f"seed{seed}"
            for m in suite.methods:
                if m.seeds is not None and seed not in m.seeds:
                    continue
                stage1_dir = cell / m.stage1 if m.stage1 else None
                where = f"{m.name} (IF {if_tag(factor)}, seed {seed})"
                if m.kind == "posthoc":
                    cfg = _load(PosthocConfig, m.config, list(m.overrides) + posthoc_data + [
                        f"output_dir={cell}", f"name={m.name}", f"from_run={stage1_dir}"], where)
                else:
                    stage2 = [f"init_from={stage1_dir}"] if stage1_dir else []
                    cfg = _load(TrainConfig, m.config, list(suite.overrides) + list(m.overrides) + list(extra_overrides)
                                + [f"imbalance_factor={factor}", f"seed={seed}", f"output_dir={cell}",
                                   f"name={m.name}"] + stage2, where)
                runs.append(Run(factor, seed, m, cfg, cell / m.name, stage1_dir))
    return runs


def _load(cls, config: Path, overrides: list[str], where: str):
    try:
        parse_overrides(overrides)
        return load_config(cls, config, overrides)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _execute(run: Run, verbose: bool) -> dict:
    if isinstance(run.config, PosthocConfig):
        return run_posthoc(run.config, quiet=not verbose)
    return run_training(run.config, resume=run.status == "partial", quiet=not verbose)


def _execute_in_worker(run: Run, verbose: bool, threads: int) -> dict:
    """A worker of ``--jobs``: without a thread count in the config, its share of the cores (N workers each
    taking every core would oversubscribe them)."""
    if getattr(run.config, "threads", None) is None:
        import torch

        torch.set_num_threads(threads)
    return _execute(run, verbose)


def _write_report(suite: Suite, runs: list[Run], plots: bool = True) -> dict:
    """The report files; under torchrun every rank runs the suite and rank 0 alone writes them."""
    return bench_report.write_report(suite, runs, plots=plots) if launched_rank() == 0 else {}


def run_bench(suite_path: str | Path, *, output_dir: str | None = None, overrides: tuple[str, ...] = (),
              verbose: bool = False, report_only: bool = False, only_factors: Sequence[float] | None = None,
              only_seeds: Sequence[int] | None = None, after_run: Callable[[Run], None] | None = None,
              jobs: int = 1) -> dict:
    """Run (or continue) the suite; returns the results summary. ``only_factors`` / ``only_seeds`` train
    a slice of the grid (the report covers every finished run). ``jobs``: runs trained at a time, each in a
    process of its own (e.g. one per CPU core, with ``threads=1``). ``after_run(run)`` is called after
    every executed run (tests use it to interrupt)."""
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if jobs > 1 and os.environ.get("WORLD_SIZE", "1") != "1":
        raise ConfigError("--jobs runs several runs side by side in one machine's processes; under torchrun every "
                          "run is already one job over all processes: drop --jobs or torchrun")
    suite = load_suite(suite_path, output_dir)
    for name, chosen, grid in (("imbalance factor", only_factors, suite.imbalance_factors),
                               ("seed", only_seeds, suite.seeds)):
        missing = sorted(set(chosen or ()) - set(grid))
        if missing:
            raise ConfigError(f"{name}(s) {missing} are not in the suite {suite.path} (it has {list(grid)})")
    runs = plan(suite, tuple(overrides))
    for run in runs:
        run.status = check_existing(run)
    todo = [r for r in runs if r.status != "finished"
            and (only_factors is None or r.imbalance_factor in only_factors)
            and (only_seeds is None or r.seed in only_seeds)]
    suite.output_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]{suite.title}[/]: {len(suite.methods)} methods x IF {list(map(if_tag, suite.imbalance_factors))} "
                  f"x seeds {list(suite.seeds)} = {len(runs)} runs; {sum(r.status == 'finished' for r in runs)} finished "
                  f"earlier, {len(todo)} to run{' in this slice' if only_factors or only_seeds else ''} -> {suite.output_dir}")
    if not report_only and jobs > 1:
        _run_parallel(suite, runs, todo, jobs, verbose, after_run)
    elif not report_only:
        _run_all(suite, runs, todo, verbose, after_run)
    summary = _write_report(suite, runs)
    failed = [r for r in runs if r.status == "failed"]
    for r in failed:
        console.print(f"[red]failed[/]: {escape(str(r.run_dir))}: {escape(r.error)}")
    console.print(f"results -> {suite.output_dir / 'results.md'} (.csv, .json, plots)")
    return {**summary, "failed": [str(r.run_dir) for r in failed]}


def _stage1_missing(run: Run, runs: list[Run]) -> str | None:
    """Why ``run`` cannot start yet (its stage-1 run is not finished), or None."""
    if run.stage1_dir is None:
        return None
    stage1 = next(r for r in runs if r.run_dir == run.stage1_dir)
    return None if stage1.status == "finished" else f"its stage-1 run {stage1.run_dir} did not finish"


def _ready(run: Run, runs: list[Run], tag: str) -> bool:
    """Whether ``run`` is to be executed now; otherwise it is settled here: skipped when its stage-1 run did not
    finish, left alone when another process of the same suite finished it meanwhile."""
    missing = _stage1_missing(run, runs)
    if missing:
        run.status, run.error = "failed", missing
        console.print(f"{tag}: [red]skipped[/], {escape(run.error)}")
        return False
    run.status = check_existing(run)
    if run.status == "finished":
        console.print(f"{tag}: finished meanwhile by another process")
        return False
    console.print(f"{tag}: {'resuming' if run.status == 'partial' else 'running'} ...")
    return True


def _settle(run: Run, tag: str, result: Callable[[], dict], t0: float) -> dict | None:
    """Get the run's metrics from ``result`` (executing it, or a worker's future) and record the outcome on
    ``run``: finished (returns the metrics), skipped (another process holds it) or failed. A config mistake
    is raised: every seed would hit it."""
    try:
        metrics = result()
    except ConfigError:
        raise
    except RunDirInUseError as err:  # another process (a second bench of the same suite) trains it
        console.print(f"{tag}: [yellow]skipped[/], {escape(str(err))}")
        return None
    except (NonFiniteLossError, RuntimeError, ValueError) as err:  # one bad run does not stop the suite
        run.status, run.error = "failed", f"{type(err).__name__}: {err}"
        console.print(f"{tag}: [red]failed[/] ({escape(run.error)})")
        return None
    run.status, run.seconds = "finished", time.perf_counter() - t0
    return metrics


def _say_done(tag: str, run: Run, metrics: dict, start: float, remaining: float) -> None:
    test = metrics["test"]
    console.print(f"{tag}: done in {duration(run.seconds)}, test overall {100 * test['mean_class']:.2f} few "
                  f"{percent(test['few'])}; elapsed {duration(time.perf_counter() - start)}, about {duration(remaining)} left")


def _run_all(suite: Suite, runs: list[Run], todo: list[Run], verbose: bool, after_run) -> None:
    start = time.perf_counter()
    for k, run in enumerate(todo, 1):
        tag = f"[{k}/{len(todo)}] IF {if_tag(run.imbalance_factor)} seed {run.seed} {run.method.name}"
        if not _ready(run, runs, tag):
            continue
        t0 = time.perf_counter()
        try:
            metrics = _settle(run, tag, lambda: _execute(run, verbose), t0)
        except KeyboardInterrupt:
            _write_report(suite, runs, plots=False)
            console.print("interrupted: finished runs are kept; run the same command again to continue")
            raise
        if metrics is not None:
            _say_done(tag, run, metrics, start, _time_left(runs, todo[k:]))
        _write_report(suite, runs, plots=False)
        if after_run is not None:
            after_run(run)


def _run_parallel(suite: Suite, runs: list[Run], todo: list[Run], jobs: int, verbose: bool, after_run) -> None:
    """``jobs`` runs at a time, each in a process of its own, taken in the suite's order; a stage-2 or post-hoc
    run starts once its stage-1 run has finished, so no worker waits while another run could go. The outcome
    of each run is recorded and reported as in the one-process loop."""
    import concurrent.futures as cf
    import multiprocessing

    start = time.perf_counter()
    threads = max(1, (os.cpu_count() or 1) // jobs)  # for runs whose config leaves the thread count open
    waiting = list(todo)
    tags = {id(run): f"[{k}/{len(todo)}] IF {if_tag(run.imbalance_factor)} seed {run.seed} {run.method.name}"
            for k, run in enumerate(todo, 1)}
    running: dict[cf.Future, tuple[Run, float]] = {}
    # spawn, not fork: a forked worker would inherit torch's thread pools and the parent's open files
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            while waiting or running:
                for run in list(waiting):
                    if len(running) >= jobs:
                        break
                    stage1_coming = run.stage1_dir is not None and any(
                        r.run_dir == run.stage1_dir for r in waiting + [r for r, _ in running.values()])
                    if stage1_coming and _stage1_missing(run, runs):
                        continue  # its stage-1 run is queued or training: later
                    waiting.remove(run)
                    if not _ready(run, runs, tags[id(run)]):
                        continue
                    running[pool.submit(_execute_in_worker, run, verbose, threads)] = (run, time.perf_counter())
                if not running:
                    continue  # every waiting run was settled above
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    run, t0 = running.pop(future)
                    metrics = _settle(run, tags[id(run)], future.result, t0)
                    if metrics is not None:
                        left = waiting + [r for r, _ in running.values()]
                        _say_done(tags[id(run)], run, metrics, start, _time_left(runs, left) / jobs)
                    _write_report(suite, runs, plots=False)
                    if after_run is not None:
                        after_run(run)
                    if isinstance(run.error, str) and "BrokenProcessPool" in run.error:
                        raise RuntimeError("a worker process died (killed, or out of memory?); finished runs are "
                                           "kept: run the same command again to continue")
        except KeyboardInterrupt:
            _write_report(suite, runs, plots=False)
            console.print("interrupted: finished runs are kept; run the same command again to continue")
            raise


def _time_left(runs: list[Run], left: list[Run]) -> float:
    """Training seconds the runs in ``left`` still need, one process, estimated as `--status` does: each one's
    remaining epochs (a resumed or running run counts from its checkpoint) times its own recorded seconds per
    epoch, else its method's, else the suite's, from every run of the suite finished so far."""
    return estimate_seconds_left([run_status(r) for r in runs], among={r.run_dir for r in left})
