"""Muon for the conv trunk (training/muon.py): what it does to a matrix, to the filters, to the rest."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli

from foveal.config import make_train_config
from foveal.errors import ConfigError
from foveal.models import create_model
from foveal.training.muon import MuonWithSGD, batch_normed_filters, encoder_matrices, orthogonalised
from foveal.training.schedule import SGD_MOMENTUM, build_optimizer


@pytest.mark.parametrize("shape", [(32, 288), (288, 32), (64, 64)], ids=["wide", "tall", "square"])
def test_orthogonalised_keeps_the_singular_vectors_and_moves_the_values_near_one(shape: tuple) -> None:
    generator = torch.Generator().manual_seed(0)
    # Singular values spread over two decades, as a momentum's are.
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=generator))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=generator))
    values = torch.logspace(0, -2, min(shape))
    matrix = u @ torch.diag(values) @ v.T
    result = orthogonalised(matrix)
    singular = torch.linalg.svdvals(result)
    assert result.shape == matrix.shape
    # Jordan's quintic leaves them in about (0.5, 1.5), not at 1 (5 steps lift a value by up to ~500x).
    assert singular.max() < 1.5 and singular.min() > 0.5
    nearest = u @ v.T  # the exact answer, U V^T
    cosine = (result * nearest).sum() / (result.norm() * nearest.norm())
    assert cosine > 0.95


def test_filters_step_at_a_fixed_norm_and_everything_else_takes_nesterov_sgd() -> None:
    torch.manual_seed(0)
    model = create_model("hybrid-nano", num_classes=3, img_size=16)
    reference = create_model("hybrid-nano", num_classes=3, img_size=16)
    reference.load_state_dict(model.state_dict())
    filters = batch_normed_filters(model)
    assert filters and all(p.ndim == 4 for p in filters)
    directions = [p.detach() / p.detach().norm() for p in filters]  # the scale is free; the direction learns
    assert not any(p is model.trunk.stem.conv.weight for p in filters)  # frozen whitening: not trained
    optim = make_train_config(optimizer="muon", lr=0.05, muon_lr=0.1, weight_decay=1e-3).optim
    muon = build_optimizer(model, optim)
    assert isinstance(muon, MuonWithSGD)
    orthogonal, *rest = muon.param_groups
    assert orthogonal["orthogonal"] and orthogonal["lr"] == 0.1 and orthogonal["weight_decay"] == 0.0
    assert [id(p) for p in orthogonal["params"]] == [id(p) for p in filters]
    assert not any(group["orthogonal"] for group in rest)
    # The same other groups in torch's own Nesterov SGD, on a copy given Muon's filters after each step.
    plain = build_optimizer(reference, make_train_config(optimizer="sgd", lr=0.05, weight_decay=1e-3).optim)
    sgd = torch.optim.SGD(plain.param_groups, lr=0.05, momentum=SGD_MOMENTUM, nesterov=True)
    images, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 3, (8,))
    for _ in range(3):
        for net, optimizer in ((model, muon), (reference, sgd)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(images), labels).backward()
            optimizer.step()
        with torch.no_grad():
            for mine, theirs in zip(filters, batch_normed_filters(reference)):
                theirs.copy_(mine)
    for filter_bank in filters:  # held at sqrt(C_out), then one step of lr x a near-orthogonal matrix
        assert filter_bank.norm().item() == pytest.approx(math.sqrt(filter_bank.shape[0]), rel=0.15)
    others = [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.ndim != 4]
    assert others
    for (name, mine), theirs in zip(
        others, [p for p in reference.parameters() if p.requires_grad and p.ndim != 4]
    ):
        assert torch.allclose(mine, theirs, atol=1e-6), name
    for start, filter_bank in zip(directions, filters):  # and every bank turned: Muon stepped it
        assert not torch.allclose(start, filter_bank / filter_bank.norm(), atol=1e-3)


def test_attention_matrices_take_an_orthogonal_step_of_muons_size_and_decay_decoupled() -> None:
    torch.manual_seed(0)
    model = create_model("hybrid-nano", num_classes=3, img_size=16)
    matrices = encoder_matrices(model)
    # q k v (3D, D), the output projection (D, D), the MLP's (hD, D) and (D, hD): every block's four
    assert len(matrices) == 4 * len(model.blocks) and all(p.ndim == 2 for p in matrices)
    assert id(model.head.weight) not in {id(p) for p in matrices}
    off = build_optimizer(model, make_train_config(optimizer="muon").optim)  # the default: SGD for them
    stepped_by_muon = sum(len(g["params"]) for g in off.param_groups if g["orthogonal"])
    assert stepped_by_muon == len(batch_normed_filters(model))
    optim = make_train_config(optimizer="muon", lr=0.2, muon_matrix_lr=0.02, weight_decay=5e-4).optim
    muon = build_optimizer(model, optim)
    filters_group, matrix_group, *rest = muon.param_groups
    assert filters_group["held_norm"] and not matrix_group["held_norm"] and matrix_group["orthogonal"]
    assert [id(p) for p in matrix_group["params"]] == [id(p) for p in matrices]
    assert not any(id(p) in {id(m) for m in matrices} for g in rest for p in g["params"])
    # decoupled decay: lr x decay per step, the SGD part's 0.2 x 5e-4
    assert matrix_group["lr"] * matrix_group["weight_decay"] == pytest.approx(0.2 * 5e-4)
    before = [p.detach().clone() for p in matrices]
    images, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 3, (8,))
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    muon.step()
    for start, matrix in zip(before, matrices):
        shrunk = start * (1 - 0.02 * matrix_group["weight_decay"])
        step = (shrunk - matrix.detach()) / 0.02  # the orthogonalised update, times Muon's size
        size = math.sqrt(max(1.0, matrix.shape[0] / matrix.shape[1]))
        singular = torch.linalg.svdvals(step / size)
        # Its largest singular value is about 1 whatever the gradient's scale, and its spectrum is far
        # flatter than the gradient's (a batch of 8 leaves some directions near zero in both).
        assert 0.7 < singular.max() < 1.5, matrix.shape
        gradient = torch.linalg.svdvals(matrix.grad)
        assert singular.median() / singular.max() > 3 * gradient.median() / gradient.max(), matrix.shape
    # A matrix with no gradient left only decays: its norm is learnt, not held.
    muon.zero_grad(set_to_none=False)
    muon.state.clear()
    matrix = matrices[0]
    start = matrix.detach().clone()
    muon.step()
    assert torch.allclose(matrix, start * (1 - 0.02 * matrix_group["weight_decay"]), atol=1e-7)


def test_muon_needs_a_batch_normed_conv_trunk() -> None:
    with pytest.raises(ConfigError, match="muon steps the batch-normed conv filters"):
        build_optimizer(
            create_model("foveal-nano", num_classes=3, img_size=16), make_train_config(optimizer="muon").optim
        )


def test_muon_on_the_command_line(class_folder: Path, tmp_path: Path) -> None:
    """Trains a hybrid and records the filters' lr; refuses an attention-only model in one line."""
    common = ["--epochs", "1", "--batch-size", "8", "--img-size", "16", "--quiet"]
    trained = foveal_cli(
        "train",
        str(class_folder),
        "--model",
        "hybrid-nano",
        "--optimizer",
        "muon",
        "--muon-lr",
        "0.05",
        "--muon-matrix-lr",
        "0.02",
        "--out",
        str(tmp_path),
        "--name",
        "muon",
        *common,
    )
    assert trained.returncode == 0, trained.stderr
    recorded = (tmp_path / "muon" / "config.json").read_text()
    assert '"muon_lr": 0.05' in recorded and '"muon_matrix_lr": 0.02' in recorded
    refused = foveal_cli(
        "train",
        str(class_folder),
        "--model",
        "foveal-nano",
        "--optimizer",
        "muon",
        "--out",
        str(tmp_path),
        "--name",
        "refused",
        *common,
    )
    assert refused.returncode == 1 and refused.stderr.startswith("error: --optimizer muon steps")
    assert "Traceback" not in refused.stderr
