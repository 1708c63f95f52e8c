"""The BALMS bilevel step against independent computations in float64: the look-ahead equals a real
torch.optim.SGD step, and the meta-gradient equals a hand-derived chain rule (numpy, no autograd) whose
inner derivative is also checked by finite differences."""

import numpy as np
import pytest
import torch
from torch import nn

from longtail.engine.meta import MetaStepHook, meta_gradient, sgd_hyperparameters, sgd_lookahead
from longtail.losses import BalancedSoftmaxLoss
from longtail.samplers import MetaDraw, MetaSamplerLogits

B, M, D, C = 7, 9, 5, 4
COUNTS = [40, 12, 5, 2]


@pytest.mark.parametrize("momentum, nesterov, dampening", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0),
                                                           (0.5, False, 0.3)])
def test_lookahead_equals_a_real_sgd_step(momentum, nesterov, dampening):
    torch.manual_seed(0)
    head = nn.Linear(D, C).double()
    opt = torch.optim.SGD(head.parameters(), lr=0.3, momentum=momentum, weight_decay=0.01, nesterov=nesterov,
                          dampening=dampening)
    x, y = torch.randn(B, D, dtype=torch.float64), torch.randint(C, (B,))
    for _ in range(2):  # the second step has a momentum buffer
        params = dict(head.named_parameters())
        loss = nn.functional.cross_entropy(head(x), y)
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        predicted = sgd_lookahead({k: v.detach() for k, v in params.items()}, grads,
                                  **sgd_hyperparameters(opt, params))
        opt.zero_grad()
        nn.functional.cross_entropy(head(x), y).backward()
        opt.step()
        for name, p in head.named_parameters():
            assert torch.allclose(predicted[name], p.detach(), atol=1e-14), name


def test_lookahead_equals_a_real_sgd_step_with_several_parameter_groups():
    """Each parameter follows its own group's lr, momentum, nesterov, dampening and weight decay."""
    from longtail.engine.meta import sgd_lookahead_of

    torch.manual_seed(1)
    head = nn.Linear(D, C).double()
    opt = torch.optim.SGD([{"params": [head.weight], "lr": 0.3, "momentum": 0.9, "weight_decay": 0.01},
                           {"params": [head.bias], "lr": 0.05, "momentum": 0.5, "nesterov": True, "weight_decay": 0.0},
                           ], lr=1.0)
    x, y = torch.randn(B, D, dtype=torch.float64), torch.randint(C, (B,))
    for _ in range(3):
        params = dict(head.named_parameters())
        grads = torch.autograd.grad(nn.functional.cross_entropy(head(x), y), list(params.values()))
        predicted = sgd_lookahead({k: v.detach() for k, v in params.items()}, dict(zip(params, grads)),
                                  **sgd_hyperparameters(opt, params))
        ahead = sgd_lookahead_of(opt, list(params.values()), list(grads))
        opt.zero_grad()
        nn.functional.cross_entropy(head(x), y).backward()
        opt.step()
        for (name, p), other in zip(head.named_parameters(), ahead):
            assert torch.allclose(predicted[name], p.detach(), atol=1e-14), name
            assert torch.allclose(other, p.detach(), atol=1e-14), name


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    head = nn.Linear(D, C).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(C, D, generator=g, dtype=torch.float64))
        head.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64))
    logits = MetaSamplerLogits(COUNTS, init_pow=0.3).double()
    with torch.no_grad():
        logits.logits.add_(0.3 * torch.randn(C, generator=g, dtype=torch.float64))
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(torch.rand(B, C, generator=g, dtype=torch.float64)))
    y = (logits.class_log_weights().detach() + gumbel).argmax(1)
    xm, ym = torch.randn(M, D, generator=g, dtype=torch.float64), torch.arange(M) % C
    buffers = {"weight": torch.randn(C, D, generator=g, dtype=torch.float64),
               "bias": torch.randn(C, generator=g, dtype=torch.float64)}
    return head, logits, x, y, gumbel, xm, ym, buffers


def _softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _ce(z, y):
    return float(np.mean(-np.log(_softmax(z)[np.arange(len(y)), y])))


def test_meta_gradient_matches_a_hand_derived_unrolled_step():
    head, logits, x, y, gumbel, xm, ym, buffers = _problem()
    lr, mu, wd = 0.4, 0.9, 5e-3
    loss = BalancedSoftmaxLoss(COUNTS)
    weights = logits.straight_through(y, gumbel)
    (got,), meta_loss = meta_gradient(head, x, y, weights, xm, ym, inner_loss=loss.per_sample,
                                      wrt=[logits.logits], lr=lr, momentum=mu, weight_decay=wd,
                                      momentum_buffers=buffers)

    # --- independent computation: numpy, closed-form gradients of a linear softmax classifier ---
    W, b = head.weight.detach().numpy(), head.bias.detach().numpy()
    X, Y, Xm, Ym = x.numpy(), y.numpy(), xm.numpy(), ym.numpy()
    log_n = np.log(np.array(COUNTS, dtype=np.float64))
    onehot = np.eye(C)[Y]
    P = _softmax(X @ W.T + b + log_n)  # Balanced Softmax probabilities of the sampled batch
    gW_b = (P - onehot)[:, :, None] * X[:, None, :]  # per-sample d BS_b / dW, (B, C, D)
    gb_b = P - onehot  # per-sample d BS_b / db, (B, C)

    def stepped(a):  # SGD with momentum buffer and weight decay on the a-weighted inner loss
        dW = (a[:, None, None] * gW_b).mean(0) + wd * W
        db = (a[:, None] * gb_b).mean(0) + wd * b
        return W - lr * (mu * buffers["weight"].numpy() + dW), b - lr * (mu * buffers["bias"].numpy() + db)

    def meta(a):
        W1, b1 = stepped(a)
        return _ce(Xm @ W1.T + b1, Ym)

    W1, b1 = stepped(np.ones(B))
    Q = _softmax(Xm @ W1.T + b1)
    vW = (Q - np.eye(C)[Ym]).T @ Xm / M  # d meta / d W1
    vb = (Q - np.eye(C)[Ym]).mean(0)
    dmeta_da = -lr / B * (np.einsum("bcd,cd->b", gW_b, vW) + gb_b @ vb)
    # finite differences of the unrolled step confirm d meta / d a
    eps = 1e-6
    fd = np.array([(meta(np.ones(B) + eps * np.eye(B)[k]) - meta(np.ones(B) - eps * np.eye(B)[k])) / (2 * eps)
                   for k in range(B)])
    assert np.allclose(fd, dmeta_da, rtol=1e-6, atol=1e-9)
    assert np.isclose(float(meta_loss), meta(np.ones(B)), atol=1e-12)
    # a_b = soft Gumbel sample at the drawn class; d a_b / d w_j = s_{b,y}(1[y=j] - s_{b,j})(1 - sigmoid(w_j))
    w = logits.logits.detach().numpy()
    sig = 1 / (1 + np.exp(-w))
    sampler_log_n = logits.log_counts.double().numpy()  # the module keeps log n in float32
    S = _softmax(sampler_log_n + np.log(sig) + gumbel.numpy())
    s_y = S[np.arange(B), Y]
    da_dw = s_y[:, None] * (np.eye(C)[Y] - S) * (1 - sig)[None, :]
    expected = dmeta_da @ da_dw
    assert np.allclose(got.numpy(), expected, rtol=1e-9, atol=1e-13)
    assert np.abs(expected).max() > 1e-6, "the test problem has a non-trivial meta-gradient"


def test_hook_draw_mismatch_is_an_error_and_adam_moves_the_logits():
    head, logits, x, y, gumbel, xm, ym, _ = _problem(1)
    opt = torch.optim.SGD(head.parameters(), lr=0.5, momentum=0.9)
    adam = torch.optim.Adam(logits.parameters(), lr=0.01)
    draw = MetaDraw(indices=torch.arange(B), classes=y, gumbel=gumbel)
    hook = MetaStepHook(head=head, sampler_logits=logits, meta_optimizer=adam, optimizer=opt,
                        inner_loss=BalancedSoftmaxLoss(COUNTS).per_sample, current_draw=lambda: draw,
                        meta_batches=lambda: iter([(xm, ym)]))
    before = logits.logits.detach().clone()
    hook(x, y, 0)
    hook(x, y, 1)  # the one-batch meta stream wraps around
    assert not torch.equal(before, logits.logits.detach())
    assert np.isfinite(hook.last_meta_loss)
    assert all(p.grad is None for p in head.parameters()), "the bilevel step leaves the head's gradients alone"
    with pytest.raises(RuntimeError, match="does not match the Meta Sampler's last draw"):
        hook(x, (y + 1) % C, 2)
    with pytest.raises(TypeError, match="torch.optim.SGD"):
        sgd_hyperparameters(torch.optim.Adam(head.parameters()), dict(head.named_parameters()))


def test_meta_gradient_with_two_parameter_groups_matches_a_float64_reference():
    """The classifier's weight and bias in two SGD groups (own lr, momentum, weight decay, nesterov off / on)
    as a real optimiser holds them: the meta-gradient equals an independent numpy derivation in float64."""
    head, logits, x, y, gumbel, xm, ym, buffers = _problem(seed=3)
    opt = torch.optim.SGD([{"params": [head.weight], "lr": 0.4, "momentum": 0.9, "weight_decay": 5e-3},
                           {"params": [head.bias], "lr": 0.1, "momentum": 0.5, "weight_decay": 0.0, "nesterov": True}],
                          lr=1.0)
    for p in (head.weight, head.bias):  # momentum buffers from an earlier step
        opt.state[p]["momentum_buffer"] = buffers["weight" if p is head.weight else "bias"].clone()
    loss = BalancedSoftmaxLoss(COUNTS)
    weights = logits.straight_through(y, gumbel)
    params = dict(head.named_parameters())
    (got,), _ = meta_gradient(head, x, y, weights, xm, ym, inner_loss=loss.per_sample, wrt=[logits.logits],
                              **sgd_hyperparameters(opt, params))

    W, b = head.weight.detach().numpy(), head.bias.detach().numpy()
    X, Y, Xm, Ym = x.numpy(), y.numpy(), xm.numpy(), ym.numpy()
    onehot = np.eye(C)[Y]
    P = _softmax(X @ W.T + b + np.log(np.array(COUNTS, dtype=np.float64)))
    gW_b, gb_b = (P - onehot)[:, :, None] * X[:, None, :], P - onehot

    def stepped(a):
        dW = (a[:, None, None] * gW_b).mean(0) + 5e-3 * W
        db = (a[:, None] * gb_b).mean(0)
        bufW = 0.9 * buffers["weight"].numpy() + dW
        bufb = 0.5 * buffers["bias"].numpy() + db
        return W - 0.4 * bufW, b - 0.1 * (db + 0.5 * bufb)  # nesterov: step along g + mu * buf

    def meta(a):
        W1, b1 = stepped(a)
        return _ce(Xm @ W1.T + b1, Ym)

    eps = 1e-6
    dmeta_da = np.array([(meta(np.ones(B) + eps * np.eye(B)[k]) - meta(np.ones(B) - eps * np.eye(B)[k])) / (2 * eps)
                         for k in range(B)])
    w = logits.logits.detach().numpy()
    sig = 1 / (1 + np.exp(-w))
    S = _softmax(logits.log_counts.double().numpy() + np.log(sig) + gumbel.numpy())
    s_y = S[np.arange(B), Y]
    expected = dmeta_da @ (s_y[:, None] * (np.eye(C)[Y] - S) * (1 - sig)[None, :])
    assert np.allclose(got.numpy(), expected, rtol=1e-6, atol=1e-10)
    assert np.abs(expected).max() > 1e-6
