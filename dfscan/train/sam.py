"""Sharpness-aware minimisation (Foret et al., ICLR 2021) as PG-FDD trains with it.

One SAM update takes two forward/backward passes:

    loss(model(x)).backward();  opt.first_step(zero_grad=True)    # w ← w + ρ·g/‖g‖
    with bn_stats_frozen(model):
        loss(model(x)).backward()                                   # gradient at the perturbed w
    opt.second_step(zero_grad=True)                                 # w restored, base step

The second pass must not move BatchNorm's running statistics a second time for the same
batch (and at perturbed weights), hence `bn_stats_frozen`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from dfscan.core.errors import InputError

DEFAULT_SGD = {"lr": 5e-4, "momentum": 0.9, "weight_decay": 5e-3}


class SAM(torch.optim.Optimizer):
    """SAM over any base optimizer; `SAM(params, torch.optim.SGD, rho=0.05, lr=..., ...)`.

    The perturbation uses the gradient norm over all parameters together (not per tensor).
    The base optimizer shares this optimizer's param_groups, so its settings (lr schedules)
    are changed through either.
    """

    def __init__(self, params: Iterable, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
                 rho: float = 0.05, **kwargs):
        if rho < 0:
            raise InputError(f"SAM rho must be non-negative, got {rho}")
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer_cls(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        norms = [p.grad.norm(2) for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not norms:
            return torch.zeros(())
        dev = norms[0].device
        return torch.stack([n.to(dev) for n in norms]).norm(2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move to the approximate worst point w + ρ·g/‖g‖ within radius ρ."""
        norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e_w = p.grad * scale.to(p.device, p.dtype)
                p.add_(e_w)
                self.state[p]["e_w"] = e_w
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to w and step the base optimizer with the gradient taken at w + e(w)."""
        for group in self.param_groups:
            for p in group["params"]:
                e_w = self.state[p].pop("e_w", None)
                if e_w is not None:
                    p.sub_(e_w)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None):  # type: ignore[override]  # closure required
        """Both steps; `closure` must do a full forward and backward (it is called once, at
        the perturbed point, after this call's caller did the first backward)."""
        if closure is None:
            raise InputError("SAM.step needs a closure; or call first_step/second_step")
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict:
        """The base optimizer's state (momentum buffers) and the shared groups (with rho):
        what a resumed run needs. The transient perturbation is not saved."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


def sam_sgd(params: Iterable, rho: float = 0.05, **sgd: float) -> SAM:
    """SAM over SGD with PG-FDD's settings (lr 5e-4, momentum 0.9, weight decay 5e-3)."""
    return SAM(params, torch.optim.SGD, rho=rho, **{**DEFAULT_SGD, **sgd})


_BN = (nn.modules.batchnorm._BatchNorm,)


@contextmanager
def bn_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Keep BatchNorm running statistics exactly as they are for the duration.

    The layers stay in train mode, so the forward pass still normalises with the batch's
    own statistics (the same normalisation the first pass used; eval mode would switch to
    the running averages and change the loss SAM differentiates). Setting momentum to 0
    alone is not enough: `num_batches_tracked` would still advance, and layers with
    momentum=None (cumulative averages) would still update. So the buffers are copied on
    entry and written back on exit, which is exact whatever the layer's settings.
    """
    saved: list[tuple[nn.Module, str, torch.Tensor]] = []  # (layer, buffer name, its value on entry)
    for m in model.modules():
        if isinstance(m, _BN) and m.track_running_stats and m.running_mean is not None:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                buf = getattr(m, name)
                if buf is not None:
                    saved.append((m, name, buf.clone()))
    try:
        yield
    finally:
        with torch.no_grad():
            for m, name, value in saved:
                getattr(m, name).copy_(value)
