"""dfscan.train.sam: SAM steps against hand-computed toys; BatchNorm statistics frozen in the second pass."""

import copy

import pytest
import torch
import torch.nn as nn

from dfscan.core.errors import InputError
from dfscan.train.sam import SAM, bn_stats_frozen, sam_sgd


def _quad(w):  # f(w) = (w - 3)^2, f'(w) = 2(w - 3)
    return ((w - 3.0) ** 2).sum()


def _sam_update(opt, w, loss_fn):
    loss_fn(w).backward()
    opt.first_step(zero_grad=True)
    perturbed = w.detach().clone()
    loss_fn(w).backward()
    opt.second_step(zero_grad=True)
    return perturbed


def test_one_sam_step_on_a_quadratic_plain_sgd():
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = SAM([w], torch.optim.SGD, rho=0.05, lr=0.1)
    perturbed = _sam_update(opt, w, _quad)
    # g = 2(1-3) = -4, e = 0.05 * -4/4 = -0.05 -> w' = 0.95
    assert perturbed.item() == pytest.approx(0.95, abs=1e-12)
    # g(w') = 2(0.95-3) = -4.1; w = 1 - 0.1 * -4.1 = 1.41
    assert w.item() == pytest.approx(1.41, abs=1e-12)


def test_two_sam_steps_with_pgfdd_sgd_settings():
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = sam_sgd([w])  # lr 5e-4, momentum 0.9, weight decay 5e-3, rho 0.05
    _sam_update(opt, w, _quad)
    # d = g(0.95) + wd*w = -4.1 + 0.005 = -4.095; buf = d; w = 1 + 5e-4*4.095
    w1 = 1 + 5e-4 * 4.095
    assert w.item() == pytest.approx(w1, abs=1e-12)
    _sam_update(opt, w, _quad)
    # g(w1) < 0 so w' = w1 - 0.05; d = 2(w' - 3) + 0.005*w1; buf = 0.9*(-4.095) + d
    d2 = 2 * (w1 - 0.05 - 3) + 0.005 * w1
    buf = 0.9 * -4.095 + d2
    assert w.item() == pytest.approx(w1 - 5e-4 * buf, abs=1e-12)
    assert w.item() == pytest.approx(1.00593569738125, abs=1e-12)


def test_perturbation_uses_the_global_gradient_norm():
    a = nn.Parameter(torch.tensor(3.0, dtype=torch.float64))
    b = nn.Parameter(torch.tensor(4.0, dtype=torch.float64))
    opt = SAM([a, b], torch.optim.SGD, rho=0.05, lr=1.0)

    def loss_fn(_):
        return 0.5 * a**2 + 0.5 * b**2  # g = (3, 4), |g| = 5

    (loss_fn(None)).backward()
    opt.first_step(zero_grad=True)
    assert (a.item(), b.item()) == pytest.approx((3.03, 4.04), abs=1e-12)  # 1e-12 guards |g| = 0
    loss_fn(None).backward()
    opt.second_step(zero_grad=True)
    assert (a.item(), b.item()) == pytest.approx((-0.03, -0.04), abs=1e-12)


def test_step_with_closure_equals_manual_steps_and_restores_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    twin = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    twin.load_state_dict(net.state_dict())
    x, y = torch.randn(16, 5), torch.randn(16, 1)

    def loss_of(m):
        return nn.functional.mse_loss(m(x), y)

    o1 = sam_sgd(net.parameters(), lr=0.05)
    o2 = sam_sgd(twin.parameters(), lr=0.05)
    loss_of(net).backward()
    o1.first_step(zero_grad=True)
    loss_of(net).backward()
    o1.second_step(zero_grad=True)
    loss_of(twin).backward()
    o2.step(lambda: loss_of(twin).backward())
    for p, q in zip(net.parameters(), twin.parameters()):
        assert torch.equal(p, q)

    # with lr 0 and no weight decay the second step lands back exactly on w
    before = [p.detach().clone() for p in net.parameters()]
    o0 = SAM(net.parameters(), torch.optim.SGD, rho=0.05, lr=0.0)
    loss_of(net).backward()
    o0.first_step(zero_grad=True)
    assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), before))
    loss_of(net).backward()
    o0.second_step(zero_grad=True)
    for p, q in zip(net.parameters(), before):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)
    with pytest.raises(InputError):
        o0.step()


def test_state_dict_round_trip_continues_identically():
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = sam_sgd([w])
    _sam_update(opt, w, _quad)
    state = copy.deepcopy(opt.state_dict())  # as if read back from disk: no shared buffers
    v = nn.Parameter(w.detach().clone())
    resumed = sam_sgd([v])
    resumed.load_state_dict(state)
    assert resumed.param_groups[0]["rho"] == 0.05
    assert resumed.base_optimizer.param_groups is resumed.param_groups
    _sam_update(opt, w, _quad)
    _sam_update(resumed, v, _quad)
    assert v.item() == w.item() == pytest.approx(1.00593569738125, abs=1e-12)


def _bn_net(momentum):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=momentum), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 2), nn.BatchNorm1d(2, momentum=momentum))


def _bn_buffers(net):
    return {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("momentum", [0.1, None])
def test_bn_running_stats_unchanged_by_second_pass(momentum):
    net = _bn_net(momentum).train()
    x = torch.randn(8, 3, 8, 8) * 3 + 1
    opt = sam_sgd(net.parameters(), lr=0.01)
    start = _bn_buffers(net)
    out1 = net(x)
    out1.square().mean().backward()
    after_first = _bn_buffers(net)
    assert any(not torch.equal(start[k], after_first[k]) for k in start)  # first pass updates them
    opt.first_step(zero_grad=True)
    with bn_stats_frozen(net):
        out2 = net(x)
        out2.square().mean().backward()
    after_second = _bn_buffers(net)
    for k in after_first:
        assert torch.equal(after_first[k], after_second[k]), k
    # the second pass still normalised with batch statistics: at the perturbed weights its
    # output equals a train-mode pass of an unfrozen copy
    twin = _bn_net(momentum).train()
    twin.load_state_dict(net.state_dict())
    torch.testing.assert_close(out2.detach(), twin(x).detach())
    opt.second_step(zero_grad=True)
    assert net[1].training  # mode untouched
