"""`longtail detect train` under torchrun with 2 processes (gloo on CPU): stage 1 end to end (DDP,
repeat-factor shards) and a decoupled BALMS stage 2 (explicit gradient averaging, Meta Reweighter,
per-rank meta streams). Every step leaves the ranks with identical parameters, the shards partition
each epoch, rank 0 alone writes the run, --resume continues exactly, and a NaN on one rank stops both."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers.runs import subprocess_env
from helpers.toy_detection import write_toy_lvis
from longtail.cli.main import main

# Runs the real CLI entry point once per argument list in each process, recording what the training
# functions are given and a hash of every parameter after every optimiser step.
PROBE = textwrap.dedent("""
    import hashlib, json, os, sys
    from longtail.cli.main import main
    from longtail.detection import train as det

    out_dir, runs = sys.argv[1], json.loads(sys.argv[2])
    rank = int(os.environ["RANK"])
    seen = {"codes": [], "shards": {}, "hashes": {}, "modules": {}, "meta_seeds": {}}
    run = {"name": None, "index": -1}
    orig_e2e, orig_decoupled = det.train_one_epoch, det.decoupled_train_one_epoch

    def digest(modules):
        h = hashlib.sha256()
        for module in modules:
            for p in module.parameters():
                h.update(p.detach().contiguous().numpy().tobytes())
        return h.hexdigest()

    def record(model, loader, epoch, modules):
        name = run["name"]
        seen["shards"].setdefault(name, []).append(list(loader.sampler))
        seen["modules"][name] = type(model).__name__
        hashes = seen["hashes"].setdefault(name, [])
        if run["index"] == 2 and epoch == 1:  # run "cut" is interrupted after its first epoch's checkpoint
            raise KeyboardInterrupt
        return lambda step, stats: hashes.append(digest(modules))

    def train_one_epoch(model, loader, *args, epoch, **kwargs):
        if run["name"] == "nan" and rank == 1:  # this rank's losses only: the other rank must stop too
            inner = model.module
            forward = inner.forward
            inner.forward = lambda *a, **k: {n: v * float("nan") for n, v in forward(*a, **k).items()}
        progress = record(model, loader, epoch, [model])
        return orig_e2e(model, loader, *args, epoch=epoch, progress=progress, **kwargs)

    def decoupled_train_one_epoch(model, loader, *args, epoch, **kwargs):
        seen["meta_seeds"][run["name"]] = kwargs["meta_batches"].generator.initial_seed()
        progress = record(model, loader, epoch, [model, kwargs["reweighter"]])
        return orig_decoupled(model, loader, *args, epoch=epoch, progress=progress, **kwargs)

    det.train_one_epoch, det.decoupled_train_one_epoch = train_one_epoch, decoupled_train_one_epoch
    for index, args in enumerate(runs):
        run["index"] = index
        run["name"] = next((a[5:] for a in args if a.startswith("name=")), args[1])  # eval / compare: the command
        if args[1] == "eval":  # the numbers training wrote, to compare with the saved re-evaluation
            with open(os.path.join(args[2], "metrics.json")) as f:
                seen["stage1_test"] = json.load(f)["test"]["bbox"]
        seen["codes"].append(main(args))
    with open(os.path.join(out_dir, "rank%d.json" % rank), "w") as f:
        json.dump(seen, f)
""")


META_RUN = textwrap.dedent("""
    import os, sys, torch
    from longtail.engine import distributed as dist_utils
    sys.path.insert(0, sys.argv[2])
    from test_detect_ddp import meta_steps

    info = dist_utils.setup("cpu")
    torch.save(meta_steps(rank=info.rank, world=info.world_size), os.path.join(sys.argv[1], f"rank{info.rank}.pt"))
""")


def meta_steps(rank: int = 0, world: int = 1, steps: int = 3) -> dict:
    """``steps`` BALMS stage-2 steps (meta step, then the real update) in float64 on a batch of two
    shares. world 2: rank r holds share r and runs the library code; world 1: a direct reference of
    the same objective (the layer gradient of the mean of the two shares' losses, meta loss averaged
    over the two meta shares) differentiated by autograd in one process."""
    import torch.nn.functional as F
    from torch import nn

    from longtail.detection import MetaReweighter, SigmoidBalancedSoftmax
    from longtail.detection.heads.balms import meta_reweight_step, sigmoid_class_loss
    from longtail.engine.distributed import average_gradients
    from longtail.engine.meta import sgd_lookahead_of

    torch.manual_seed(0)
    C, D, R, M = 4, 3, 12, 8
    head = SigmoidBalancedSoftmax([8, 4, 2, 1], num_images=10)
    layer, reweighter = nn.Linear(D, C).double(), MetaReweighter(C).double()
    sgd = torch.optim.SGD(layer.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    adam = torch.optim.Adam(reweighter.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        feats = torch.randn(2, R, D, generator=g, dtype=torch.float64)
        labels = torch.randint(0, C + 1, (2, R), generator=g)  # 0: background RoIs
        meta_feats = torch.randn(2, M, D, generator=g, dtype=torch.float64)
        meta_labels = torch.randint(1, C + 1, (2, M), generator=g)
        if world == 2:
            meta_reweight_step(layer, head, feats[rank], labels[rank], meta_feats[rank], meta_labels[rank], reweighter,
                               adam, sgd)
            loss = head.loss(layer(feats[rank]), labels[rank], class_weights=reweighter().detach())
            sgd.zero_grad()
            loss.backward()
            average_gradients(layer.parameters())
        else:
            params = [layer.weight, layer.bias]
            weights = reweighter()
            inner = sum(head.loss(F.linear(feats[r], *params), labels[r], class_weights=weights) for r in (0, 1)) / 2
            grads = torch.autograd.grad(inner, params, create_graph=True)
            stepped = sgd_lookahead_of(sgd, params, grads)
            meta = sum(sigmoid_class_loss(F.linear(meta_feats[r], *stepped), meta_labels[r]) for r in (0, 1)) / 2
            adam.zero_grad()
            meta.backward(inputs=list(reweighter.parameters()))
            adam.step()
            loss = sum(head.loss(layer(feats[r]), labels[r], class_weights=reweighter().detach()) for r in (0, 1)) / 2
            sgd.zero_grad()
            loss.backward()
        sgd.step()
    return {"reweighter": reweighter.logits.detach().clone(), "weight": layer.weight.detach().clone()}


@pytest.mark.ddp
@pytest.mark.slow
def test_meta_reweighter_gradient_under_ddp_is_the_global_one(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(META_RUN)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path), os.path.dirname(__file__)]
    env = subprocess_env()  # tests/ on the path: the script imports this module and its helpers
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    reference, start = meta_steps(), meta_steps(steps=0)
    for key in ("reweighter", "weight"):
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        assert torch.allclose(ranks[0][key], reference[key], rtol=1e-10, atol=1e-12), key
        assert (reference[key] - start[key]).abs().max() > 1e-3, key  # the steps moved it


def _rank_files(tmp_path):
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def _without_timing(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k not in ("name", "train_seconds", "eval_seconds")}
    out["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in metrics["history"]]
    return json.loads(json.dumps(out))  # NaN-safe comparison through the same JSON text


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_stage1_and_balms_stage2(tmp_path, capsys):
    from longtail.detection.lvis import LvisDetection
    from longtail.samplers.repeat_factor import RepeatFactorSampler

    data = write_toy_lvis(tmp_path / "data")
    runs_dir = tmp_path / "runs"
    (tmp_path / "common.yaml").write_text(
        f"train_json: {data['train']}\nval_json: {data['val']}\ntest_json: {data['test']}\nnum_threads: 1\n"
        "detector_options: {min_size: 64, max_size: 64, box_score_thresh: 0.0001}\n"
        f"output_dir: {runs_dir}\nbatch_size: 2\nlr: 0.01\ndevice: cpu\n")
    common = tmp_path / "common.yaml"
    stage1 = ["detect", "train", str(common), "name=stage1", "epochs=1", "repeat_threshold=0.3", "warmup_iters=2"]
    balms = ["detect", "train", str(common), "head=balms", "epochs=2", f"init_from={runs_dir / 'stage1'}"]
    runs = [stage1, [*balms, "name=balms"], [*balms, "name=cut"], [*balms, "name=cut", "--resume"],
            ["detect", "train", str(common), "name=nan", "epochs=1"],
            # the commands that only read runs: sharded evaluation and the table, printed and written once
            ["detect", "eval", str(runs_dir / "stage1"), "--split", "test", "--save", "--device", "cpu"],
            ["detect", "compare", str(runs_dir / "stage1"), str(runs_dir / "balms"), "--json-out",
             str(tmp_path / "table.json")]]
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    env = subprocess_env()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(probe), str(tmp_path), json.dumps(runs)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = _rank_files(tmp_path)
    assert [r["codes"] for r in ranks] == [[0, 0, 130, 0, 2, 0, 0]] * 2, result.stderr[-3000:]

    # the same parameters on both ranks after every step, and they do move
    for name in ("stage1", "balms", "cut"):
        a, b = ranks[0]["hashes"][name], ranks[1]["hashes"][name]
        assert a == b and len(a) >= 3 and len(set(a)) == len(a), name
    assert ranks[0]["modules"]["stage1"] == "DistributedDataParallel"

    # stage 1: repeat-factor shards interleave back into the one-process epoch draw
    train = LvisDetection(str(data["train"]), data["train"].parent)
    single = RepeatFactorSampler(train.repeat_factors(0.3), seed=0)
    single.set_epoch(0)
    draw = list(single)
    a, b = ranks[0]["shards"]["stage1"][0], ranks[1]["shards"]["stage1"][0]
    assert len(a) == len(b) and [i for pair in zip(a, b) for i in pair][:len(draw)] == draw
    # stage 2: two epochs, each a different partition of the 10 training images
    epochs = [(set(r0), set(r1)) for r0, r1 in zip(ranks[0]["shards"]["balms"], ranks[1]["shards"]["balms"])]
    assert len(epochs) == 2 and all(not s0 & s1 and s0 | s1 == set(range(10)) for s0, s1 in epochs)
    assert ranks[0]["shards"]["balms"][0] != ranks[0]["shards"]["balms"][1]
    assert ranks[0]["meta_seeds"]["balms"] != ranks[1]["meta_seeds"]["balms"], "each rank draws its own meta batches"

    # rank 0 alone writes and prints; the evaluation covers every val / test image once
    metrics = {n: json.loads((runs_dir / n / "metrics.json").read_text()) for n in ("stage1", "balms", "cut")}
    for m in metrics.values():
        assert m["world_size"] == 2 and m["val"]["num_images"] == 4 and m["test"]["num_images"] == 4
        assert {"AP", "APr", "APc", "APf"} <= set(m["val"]["bbox"]) and 0 <= m["test"]["bbox"]["AP"] <= 1
    assert metrics["balms"]["history"][1]["meta_loss"] > 0 and metrics["balms"]["reweighter"] != [0.5] * 5
    assert result.stdout.count("val: bbox") == 3 and result.stdout.count("epoch   1/2") == 2
    assert not list(tmp_path.glob("**/*.tmp"))

    # detect eval and compare under torchrun: rank 0 prints and writes once; the sharded re-evaluation
    # saved the numbers the training run wrote
    assert result.stdout.count("stage1 (test): bbox") == 1
    assert result.stdout.count("LVIS-style bbox AP on the test split") == 1
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["rows"]["balms (decoupled)"]["bbox"]["AP"] == pytest.approx(metrics["balms"]["test"]["bbox"]["AP"])
    assert metrics["stage1"]["test"]["bbox"] == pytest.approx(ranks[0]["stage1_test"], nan_ok=True)

    # --resume after the interruption reproduces the uninterrupted run exactly
    assert ranks[0]["hashes"]["cut"] == ranks[0]["hashes"]["balms"]
    assert _without_timing(metrics["cut"]) == _without_timing(metrics["balms"])
    final = [torch.load(runs_dir / n / "model.pt", weights_only=True) for n in ("balms", "cut")]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])

    # a NaN loss on rank 1 alone stops both ranks at the same step, leaving no finished run
    assert result.stderr.count("non-finite detection loss at epoch 0, step 0") == 2
    assert not (runs_dir / "nan" / "metrics.json").exists() and ranks[0]["hashes"]["nan"] == []

    # the gathered predictions are complete and in order: one process re-evaluates to the same numbers
    capsys.readouterr()
    for split in ("val", "test"):
        assert main(["detect", "eval", str(runs_dir / "balms"), "--json", "--device", "cpu", "--split", split]) == 0
        again = json.loads(capsys.readouterr().out)
        assert again["bbox"] == pytest.approx(metrics["balms"][split]["bbox"], nan_ok=True)
