"""The optimizer and learning-rate schedule each configuration asks for."""

from __future__ import annotations

import pytest
import torch

from foveal.config import make_train_config
from foveal.training.recipe import SGD_LR, SGD_LR_BATCH, resolve_recipe
from foveal.training.schedule import DEFAULT_WEIGHT_DECAY, StepPlan, build_optimizer, lr_schedule


def lr_curve(decay: str, total: int = 100, warmup: int = 10) -> list[float]:
    optim = make_train_config(optimizer="adamw", lr=1.0, lr_decay=decay, min_lr_ratio=0.01).optim
    optimizer = build_optimizer(torch.nn.Linear(2, 2), optim)
    scheduler = lr_schedule(optimizer, StepPlan(total, warmup), optim)
    curve = []
    for _ in range(total):
        curve.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return curve


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_warmup_then_decay_to_the_configured_end(decay: str) -> None:
    curve = lr_curve(decay)
    assert curve[0] == pytest.approx(0.1) and curve[9] == pytest.approx(1.0)  # linear warmup
    assert all(a >= b for a, b in zip(curve[9:], curve[10:]))  # then never up
    halfway = curve[10 + 45]
    if decay == "linear":  # straight down to zero
        assert halfway == pytest.approx(0.5) and curve[-1] == pytest.approx(1 / 90)
    else:
        assert halfway == pytest.approx(0.01 + 0.99 * 0.5, abs=0.02) and curve[-1] > 0.01


def test_each_optimizer_decays_the_weight_matrices_only() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    for name in ("adamw", "adam", "sgd"):
        optimizer = build_optimizer(model, make_train_config(optimizer=name).optim)
        decay, no_decay = optimizer.param_groups
        assert len(decay["params"]) == 1 and len(no_decay["params"]) == 3  # weight | bias, norm
        assert no_decay["weight_decay"] == 0.0
        assert decay["weight_decay"] == (0.0 if name == "adam" else DEFAULT_WEIGHT_DECAY[name])
    sgd = build_optimizer(model, make_train_config(optimizer="sgd", weight_decay=1e-3, lr=0.3).optim)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["lr"] == 0.3
    assert sgd.param_groups[0]["weight_decay"] == 1e-3


def test_sgd_gets_its_own_learning_rate_unless_one_is_given() -> None:
    cpu = torch.device("cpu")
    chosen, _ = resolve_recipe(make_train_config(optimizer="sgd", batch_size=128), 1000, cpu, 32, 10)
    assert chosen.optim.lr == pytest.approx(SGD_LR * 128 / SGD_LR_BATCH)
    given, _ = resolve_recipe(make_train_config(optimizer="sgd", lr=0.05), 1000, cpu, 32, 10)
    assert given.optim.lr == 0.05


def test_batch_norm_biases_learn_at_their_scale_with_the_same_decay_step() -> None:
    """bias_lr_scale (airbench's 64 for SGD): a third group holding exactly the batch norms' shifts,
    at scale x lr and L2 / scale, so lr x L2 (the decay step) is the filters'; 1 keeps two groups."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    model(torch.zeros(2, 3, 5, 5))
    norm = model[1]
    optimizer = build_optimizer(model, make_train_config(optimizer="sgd", lr=0.1, bias_lr_scale=64.0).optim)
    decay, no_decay, scaled = optimizer.param_groups
    assert [id(p) for p in scaled["params"]] == [id(norm.bias)]
    assert scaled["lr"] == pytest.approx(6.4) and decay["lr"] == pytest.approx(0.1)
    assert scaled["lr"] * scaled["weight_decay"] == pytest.approx(decay["lr"] * decay["weight_decay"])
    assert any(p is norm.weight for p in no_decay["params"])  # the norm's scale keeps the base lr
    scheduler = lr_schedule(optimizer, StepPlan(10, 0), make_train_config(lr_decay="linear").optim)
    optimizer.step()
    scheduler.step()
    assert scaled["lr"] / decay["lr"] == pytest.approx(64.0)  # the schedule scales both alike
    plain = build_optimizer(model, make_train_config(optimizer="sgd", bias_lr_scale=1.0).optim)
    assert len(plain.param_groups) == 2
