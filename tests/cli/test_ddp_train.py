"""`longtail train` under torchrun with 2 processes (gloo on CPU): DDP, disjoint sampler shards,
evaluation over all samples, rank-0 outputs; `longtail eval` of the result reproduces its test metrics."""

import json
import subprocess
import sys
import textwrap

import pytest

from helpers.runs import read_metrics, subprocess_env, tiny_args
from longtail.cli.main import main

# Runs the real CLI entry point in each process, recording what the engine is given.
PROBE = textwrap.dedent("""
    import json, os, sys
    from longtail.engine import trainer as train
    from longtail.cli.main import main

    seen = {"model_types": [], "shards": {}, "eval_sizes": [], "buffers": []}
    orig_train, orig_eval, orig_predict = train.train_one_epoch, train.evaluate, train.predict

    def train_one_epoch(model, loader, *args, epoch, **kwargs):
        seen["model_types"].append(type(model).__name__)
        seen["shards"][epoch] = list(loader.sampler)  # set_epoch was called; the sampler owns its RNG
        return orig_train(model, loader, *args, epoch=epoch, **kwargs)

    def evaluate(model, loader, *args, **kwargs):
        metrics = orig_eval(model, loader, *args, **kwargs)
        seen["eval_sizes"].append([len(loader.dataset), metrics["num_samples"], len(loader.sampler)])
        inner = getattr(model, "module", model)  # the BatchNorm statistics the evaluation used
        seen["buffers"].append([float(b.double().sum()) for b in inner.buffers()])
        return metrics

    def predict(model, loader, *args, **kwargs):  # the test pass keeps its logits for the run's reports
        logits, targets = orig_predict(model, loader, *args, **kwargs)
        seen["eval_sizes"].append([len(loader.dataset), int(targets.numel()), len(loader.sampler)])
        inner = getattr(model, "module", model)
        seen["buffers"].append([float(b.double().sum()) for b in inner.buffers()])
        return logits, targets

    train.train_one_epoch, train.evaluate, train.predict = train_one_epoch, evaluate, predict
    code = main(sys.argv[2:])
    with open(os.path.join(sys.argv[1], "rank%s.json" % os.environ["RANK"]), "w") as f:
        json.dump({"code": code, "world": int(os.environ["WORLD_SIZE"]), **seen}, f)
    sys.exit(code)
""")


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_ddp_run(tmp_path, capsys):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    # 5 classes, test set of 105 images: the shards (53 / 52) and, with eval batches of 13, their
    # number of batches (5 / 4) differ between the ranks, as they do on real data
    args = tiny_args(tmp_path, "ddp", "dataset_options={image_size: 8, num_classes: 5, test_per_class: 21}",
                     "eval_batch_size=13", "batch_size=8", "loss=balanced_softmax")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(probe), str(tmp_path), "train", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["code"] == 0 and r["world"] == 2 for r in ranks)
    assert all(set(r["model_types"]) == {"DistributedDataParallel"} for r in ranks)

    train_size = 40 + 18 + 8 + 4 + 2
    for epoch in ("0", "1"):
        a, b = ranks[0]["shards"][epoch], ranks[1]["shards"][epoch]
        assert len(a) == len(b) == train_size // 2
        assert not set(a) & set(b), f"epoch {epoch}: ranks share samples"
        assert set(a) | set(b) == set(range(train_size))
    assert ranks[0]["shards"]["0"] != ranks[0]["shards"]["1"]

    # every evaluation (2 val epochs + test of the last and of the best model) saw every sample once
    for r, rank in enumerate(ranks):
        for dataset_size, gathered, shard in rank["eval_sizes"]:
            assert gathered == dataset_size and shard == len(range(r, dataset_size, 2))
    # val after each of the 2 epochs, the test set (last model; best model if it differs), val logits at the end
    sizes = [s[0] for s in ranks[0]["eval_sizes"]]
    assert sizes[:2] == [50, 50] and sizes[2] == 105 and sizes[-1] == 50

    assert ranks[0]["buffers"] == ranks[1]["buffers"], "both ranks evaluate with rank 0's BatchNorm statistics"

    run_dir = tmp_path / "ddp"
    m = read_metrics(run_dir)
    assert m["finished"] and m["test"]["num_samples"] == 105 and len(m["history"]) == 2
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 1, "only rank 0 logs to TensorBoard"
    assert result.stdout.count("epoch   1/2") == 1, "only rank 0 prints progress"

    # the gathered predictions are in dataset order and both ranks used rank 0's weights and statistics
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "--device", "cpu"]) == 0
    again = json.loads(capsys.readouterr().out)
    for key in ("top1", "mean_class", "many", "medium", "few", "per_class"):
        assert again[key] == m["test"][key], key


@pytest.mark.ddp
@pytest.mark.slow
def test_bench_suite_under_torchrun(tmp_path):
    """`longtail bench` under torchrun: every rank trains each run of the suite (stage 1, a decoupled
    stage 2 and a post-hoc correction) in one process group; the next run starts only once rank 0 has
    written the previous one, and rank 0 alone prints and writes the report."""
    from test_bench import REPO, write_suite

    suite = write_suite(tmp_path, seeds=[0], methods=[
        {"name": "ce", "config": str(REPO / "configs/fashion_mnist_lt/ce.yaml")},
        {"name": "crt", "config": str(REPO / "configs/fashion_mnist_lt/crt.yaml"), "from": "ce",
         "overrides": ["epochs=1", "cache_views=1"]},
        {"name": "tau_norm", "posthoc": str(REPO / "configs/fashion_mnist_lt/tau_norm.yaml"), "from": "ce"}])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "longtail.cli.main", "bench", str(suite)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["complete"] and [r["status"] for r in report["runs"]] == ["finished"] * 3
    assert result.stdout.count("results ->") == 1 and result.stdout.count("crt: done") == 1
    stage2 = read_metrics(tmp_path / "out" / "runs" / "if10" / "seed0" / "crt")
    assert stage2["finished"] and stage2["test"]["num_samples"] > 0
