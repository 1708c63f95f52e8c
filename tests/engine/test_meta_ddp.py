"""Under DDP (2 processes, gloo on CPU) the meta-gradient is the one of the global batch and every rank
ends each step with identical sampler logits, equal to a single process that sees the whole batch."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from longtail.engine.meta import meta_gradient
from longtail.losses import BalancedSoftmaxLoss
from longtail.samplers import MetaSamplerLogits

COUNTS, D, B, M, STEPS = [30, 9, 3], 4, 6, 5, 3

RUN = textwrap.dedent("""
    import os, sys, torch
    from longtail.engine import distributed as dist_utils
    sys.path.insert(0, sys.argv[2])
    from test_meta_ddp import run_steps

    info = dist_utils.setup("cpu")
    logits, grads = run_steps(rank=info.rank, world=info.world_size)
    torch.save({"logits": logits, "grads": grads}, os.path.join(sys.argv[1], f"rank{info.rank}.pt"))
    dist_utils.cleanup()
""")


def run_steps(rank: int = 0, world: int = 1):
    """STEPS bilevel steps + Adam; rank r takes the strided share of each global batch of 2B (meta 2M).
    Returns the final logits and each step's meta-gradient (float64)."""
    torch.manual_seed(0)
    head = nn.Linear(D, len(COUNTS)).double()
    logits = MetaSamplerLogits(COUNTS, init_pow=0.5).double()
    adam = torch.optim.Adam(logits.parameters(), lr=0.05)
    loss = BalancedSoftmaxLoss(COUNTS)
    g = torch.Generator().manual_seed(1)
    grads = []
    for _ in range(STEPS):
        x = torch.randn(2 * B, D, generator=g, dtype=torch.float64)
        gumbel = -torch.log(-torch.log(torch.rand(2 * B, len(COUNTS), generator=g, dtype=torch.float64)))
        xm = torch.randn(2 * M, D, generator=g, dtype=torch.float64)
        ym = torch.arange(2 * M) % len(COUNTS)
        share, meta_share = slice(rank, None, world), slice(rank, None, world)
        y = (logits.class_log_weights().detach() + gumbel).argmax(1)
        weights = logits.straight_through(y[share], gumbel[share])
        (grad,), _ = meta_gradient(head, x[share], y[share], weights, xm[meta_share], ym[meta_share],
                                   inner_loss=loss.per_sample, wrt=[logits.logits], lr=0.5, momentum=0.9,
                                   weight_decay=1e-3)
        adam.zero_grad()
        logits.logits.grad = grad
        adam.step()
        grads.append(grad.clone())
        with torch.no_grad():  # the real update moves the head too, identically on every rank
            head.weight.add_(0.1 * x[:1].T.mean() * torch.ones_like(head.weight))
    return logits.logits.detach().clone(), torch.stack(grads)


@pytest.mark.ddp
@pytest.mark.slow
def test_two_ranks_match_one_process_on_the_global_batch(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path), os.path.dirname(__file__)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert torch.equal(ranks[0]["logits"], ranks[1]["logits"]), "every rank ends with the same sampler logits"
    assert torch.equal(ranks[0]["grads"], ranks[1]["grads"])
    single_logits, single_grads = run_steps()
    assert torch.allclose(ranks[0]["grads"], single_grads, rtol=1e-10, atol=1e-14), \
        "the DDP meta-gradient is the exact one of the global batch"
    assert torch.allclose(ranks[0]["logits"], single_logits, rtol=1e-10, atol=1e-12)
    assert single_grads.abs().max() > 1e-6
