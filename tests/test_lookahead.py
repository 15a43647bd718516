"""Lookahead (training/lookahead.py): when the slow copy is taken and synced, and that the run ends on it."""

from __future__ import annotations

import pytest
import torch

from foveal.training.lookahead import EVERY, START, Lookahead


def drift(model: torch.nn.Module) -> None:
    """A stand-in for an optimizer step: every weight moves by +1."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)


def test_the_model_runs_free_then_is_pulled_to_the_slow_copy_and_ends_on_it() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    total = 100
    lookahead = Lookahead()
    first_sync = next(s for s in range(1, total) if s % EVERY == 0 and s >= START * total)
    free_weight = None
    for step in range(1, total + 1):
        drift(model)
        before = model[0].weight.detach().clone()
        lookahead.step(model, step, total)
        after = model[0].weight.detach()
        if step < first_sync:
            assert lookahead.state_dict() is None and torch.equal(before, after)
        elif step == first_sync:  # the slow copy is taken; the model is left as it is
            assert torch.equal(lookahead.state_dict()["0.weight"], before)
            free_weight = before
        elif step % EVERY == 0 and step < total:  # synced: pulled back toward the slow copy
            assert (after < before).all() and torch.equal(after, lookahead.state_dict()["0.weight"])
    assert free_weight is not None
    state = lookahead.state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # ends on the slow copy
    assert "1.num_batches_tracked" not in state  # an integer count is not averaged
    assert (model[0].weight < free_weight + (total - first_sync)).all()  # it lags the free run


def test_the_slow_copy_round_trips_through_a_checkpoint_state() -> None:
    model = torch.nn.Linear(2, 2)
    lookahead = Lookahead()
    for step in range(1, 60):
        drift(model)
        lookahead.step(model, step, 100)
    restored = Lookahead()
    restored.load_state_dict(lookahead.state_dict(), torch.device("cpu"))
    twin = torch.nn.Linear(2, 2)
    twin.load_state_dict(model.state_dict())
    for step in range(60, 101):
        drift(model), drift(twin)
        lookahead.step(model, step, 100)
        restored.step(twin, step, 100)
    assert torch.equal(model.weight, twin.weight)
    empty = Lookahead()
    empty.load_state_dict(None, torch.device("cpu"))
    assert empty.state_dict() is None


@pytest.mark.parametrize("total", [1, 3])
def test_a_run_shorter_than_the_free_share_never_syncs(total: int) -> None:
    model = torch.nn.Linear(2, 2)
    lookahead = Lookahead()
    for step in range(1, total + 1):
        drift(model)
        lookahead.step(model, step, total)
    assert lookahead.state_dict() is None
