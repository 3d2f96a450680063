"""vaekit.core.composite: the table likelihood equals the sum of per-column torch.distributions
log-densities over the observed cells, its softmax is per column, and NaN cells drop out."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Normal

from vaekit.core.composite import Block, CompositeLikelihood, as_blocks

LAYOUTS = [
    [("continuous", 0)],
    [("categorical", 4)],
    [("binary", 2)],
    [("continuous", 0), ("categorical", 3), ("binary", 2), ("integer", 0), ("categorical", 2)],
    [("categorical", 5), ("categorical", 1), ("categorical", 2), ("continuous", 0)],
    [("binary", 2), ("integer", 0), ("binary", 2), ("categorical", 7), ("continuous", 0)],
]


def random_rows(blocks: list[Block], n: int, g: torch.Generator, p_missing: float = 0.0):
    """x (n, C): N(0, 1) numbers, level indices, 0/1; NaN in a share of the cells."""
    cols = []
    for b in blocks:
        if b.kind in ("continuous", "integer"):
            cols.append(torch.randn(n, generator=g))
        else:
            k = 2 if b.kind == "binary" else b.levels
            cols.append(torch.randint(0, k, (n,), generator=g).float())
    x = torch.stack(cols, -1)
    x[torch.rand(x.shape, generator=g) < p_missing] = math.nan
    return x


def reference(lik: CompositeLikelihood, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-cell log-densities with torch.distributions, column by column: (..., batch, C)."""
    sigma = torch.exp(lik.log_sigma.clamp(-7, 5))
    out, offset, num = [], 0, 0
    for j, b in enumerate(lik.blocks):
        xj = torch.nan_to_num(x[:, j], nan=0.0)
        if b.kind in ("continuous", "integer"):
            term = Normal(params[..., offset], sigma[num]).log_prob(xj)
            num += 1
        elif b.kind == "binary":
            term = Bernoulli(logits=params[..., offset]).log_prob(xj)
        else:
            term = Categorical(logits=params[..., offset : offset + b.levels]).log_prob(xj.long())
        term = torch.where(torch.isnan(x[:, j]), torch.zeros(()), term)
        out.append(term)
        offset += b.width
    assert offset == lik.param_dim
    return torch.stack(out, -1)


@pytest.mark.parametrize("layout", range(len(LAYOUTS)))
@pytest.mark.parametrize("p_missing", [0.0, 0.3])
def test_log_prob_is_the_sum_of_per_column_log_probs(layout: int, p_missing: float):
    g = torch.Generator().manual_seed(layout)
    lik = CompositeLikelihood(LAYOUTS[layout])
    with torch.no_grad():
        lik.log_sigma.copy_(torch.randn(lik.log_sigma.shape, generator=g))
    x = random_rows(list(lik.blocks), 9, g, p_missing)
    params = 2 * torch.randn(3, 9, lik.param_dim, generator=g)
    ref = reference(lik, params, x)
    cols = lik.log_prob_columns(params, x)
    assert cols.shape == (3, 9, len(lik.blocks))
    torch.testing.assert_close(cols, ref)
    lp = lik.log_prob(params, x)
    assert lp.shape == (3, 9)
    torch.testing.assert_close(lp, ref.sum(-1))
    # params without the leading sample dimension: (batch, P) -> (batch,)
    torch.testing.assert_close(lik.log_prob(params[1], x), ref[1].sum(-1))


@pytest.mark.parametrize("layout", range(len(LAYOUTS)))
def test_log_prob_pairs_scores_every_row_against_every_parameter_set(layout: int):
    g = torch.Generator().manual_seed(10 + layout)
    lik = CompositeLikelihood(LAYOUTS[layout])
    with torch.no_grad():
        lik.log_sigma.copy_(torch.randn(lik.log_sigma.shape, generator=g))
    x = random_rows(list(lik.blocks), 7, g, 0.3)
    params = 2 * torch.randn(5, lik.param_dim, generator=g)
    pairs = lik.log_prob_pairs(params, x)
    assert pairs.shape == (5, 7)
    ref = reference(lik, params[:, None].expand(5, 7, lik.param_dim), x).sum(-1)
    torch.testing.assert_close(pairs, ref)


def test_a_missing_cell_contributes_zero_and_no_gradient():
    blocks = LAYOUTS[3]
    g = torch.Generator().manual_seed(1)
    lik = CompositeLikelihood(blocks)
    x = random_rows(list(lik.blocks), 4, g)
    params = torch.randn(2, 4, lik.param_dim, generator=g, requires_grad=True)
    full = lik.log_prob_columns(params, x).detach()
    offset = 0
    for j, b in enumerate(lik.blocks):
        gapped = x.clone()
        gapped[2, j] = math.nan
        lp = lik.log_prob(params, gapped)
        # row 2 loses exactly column j's term; the other rows do not change
        torch.testing.assert_close(lp[:, 2], full[:, 2].sum(-1) - full[:, 2, j])
        torch.testing.assert_close(lp[:, [0, 1, 3]], full[:, [0, 1, 3]].sum(-1))
        (grad,) = torch.autograd.grad(lp.sum(), params)
        assert torch.isfinite(grad).all()
        assert (grad[:, 2, offset : offset + b.width] == 0).all()
        assert (grad[:, 0, offset : offset + b.width] != 0).any()
        offset += b.width
    # a row with every cell missing has log p(x|z) = 0
    assert (lik.log_prob(params, torch.full((4, len(blocks)), math.nan)) == 0).all()


def test_the_softmax_runs_over_each_column_alone():
    lik = CompositeLikelihood([("categorical", 3), ("categorical", 4), ("binary", 2)])
    g = torch.Generator().manual_seed(2)
    x = random_rows(list(lik.blocks), 5, g)
    params = torch.randn(5, lik.param_dim, generator=g)
    before = lik.log_prob_columns(params, x)
    changed = params.clone()
    changed[:, 3:7] += 10 * torch.randn(5, 4, generator=g)  # the second column's logits
    after = lik.log_prob_columns(changed, x)
    torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]])
    assert not torch.allclose(after[:, 1], before[:, 1])
    # each column's probabilities sum to 1 over its own levels
    for col, k in ((0, 3), (1, 4)):
        probs = 0
        for level in range(k):
            x = torch.zeros(5, 3)
            x[:, col] = level
            probs = probs + lik.log_prob_columns(params, x)[:, col].exp()
        torch.testing.assert_close(probs, torch.ones(5))


def test_learned_sigma_is_one_per_numeric_column_and_clamped():
    lik = CompositeLikelihood([("continuous", 0), ("binary", 2), ("integer", 0)], sigma=0.5)
    assert lik.log_sigma.shape == (2,)
    torch.testing.assert_close(lik.log_sigma.detach(), torch.full((2,), math.log(0.5)))
    with torch.no_grad():
        lik.log_sigma.fill_(-50.0)  # would be a zero sigma: clamped at exp(-7)
    lp = lik.log_prob(torch.zeros(1, 4), torch.tensor([[0.0, 1.0, 0.0]]))
    expected = 2 * Normal(0.0, math.exp(-7)).log_prob(torch.tensor(0.0)) - math.log(2)
    torch.testing.assert_close(lp, expected.reshape(1))


@torch.no_grad()
def test_widths_mean_and_sample_are_in_data_space():
    lik = CompositeLikelihood([("continuous", 0), ("categorical", 3), ("binary", 2)])
    assert (lik.param_dim, lik.feature_dim, lik.event_shape) == (5, 8, (3,))
    params = torch.tensor([[0.7, -1.0, 4.0, 0.0, 20.0], [-2.0, 9.0, 0.0, 0.0, -20.0]])
    torch.testing.assert_close(lik.mean(params), torch.tensor([[0.7, 1.0, 1.0], [-2.0, 0.0, 0.0]]))
    g = torch.Generator().manual_seed(3)
    draws = lik.sample(params.expand(2000, 2, 5), generator=g)
    assert draws.shape == (2000, 2, 3)
    assert set(draws[..., 1].unique().tolist()) <= {0.0, 1.0, 2.0}
    assert set(draws[..., 2].unique().tolist()) <= {0.0, 1.0}
    # row 0: level 1 has logit 4 against -1 and 0: p = e^4 / (e^-1 + e^4 + 1)
    p1 = math.exp(4) / (math.exp(-1) + math.exp(4) + 1)
    assert abs(float((draws[:, 0, 1] == 1).float().mean()) - p1) < 0.03
    assert abs(float(draws[:, 0, 0].mean()) - 0.7) < 0.1  # sigma 1, 2000 draws
    assert (draws[:, 0, 2] == 1).all() and (draws[:, 1, 2] == 0).all()
    # the same generator state gives the same draws
    again = lik.sample(params, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(
        again, lik.sample(params, generator=torch.Generator().manual_seed(5))
    )


def test_encoder_input_one_hot_values_and_mask_bits():
    lik = CompositeLikelihood([("continuous", 0), ("categorical", 3), ("binary", 2)])
    nan = math.nan
    x = torch.tensor([[0.5, 2.0, 1.0], [nan, nan, nan], [-1.0, 0.0, nan]])
    h = lik.eval().encoder_input(x)  # training mode hides cells at random (cell_dropout)
    assert h.shape == (3, lik.feature_dim)
    expected = torch.tensor(
        [
            [0.5, 0, 0, 1, 1, 1, 1, 1],
            [0.0, 0, 0, 0, 0, 0, 0, 0],
            [-1.0, 1, 0, 0, 0, 1, 1, 0],
        ]
    )
    torch.testing.assert_close(h, expected)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([0.0, 3.0, 1.0], "column 1 is categorical and takes a level index in 0..2"),
        ([0.0, 1.5, 1.0], "column 1 is categorical"),
        ([0.0, -1.0, 1.0], "column 1 is categorical"),
        ([0.0, 1.0, 0.5], "column 2 is binary and takes a level index in 0..1"),
        ([math.inf, 1.0, 1.0], "infinite"),
    ],
)
def test_check_support_refuses_what_is_not_a_cell(row: list[float], message: str):
    lik = CompositeLikelihood([("continuous", 0), ("categorical", 3), ("binary", 2)])
    lik.check_support(torch.tensor([[0.0, 2.0, 0.0], [math.nan] * 3]))  # NaN: missing, fine
    with pytest.raises(ValueError, match=message):
        lik.check_support(torch.tensor([row]))
    with pytest.raises(ValueError, match="3 columns"):
        lik.check_support(torch.zeros(2, 4))


def test_blocks_from_plain_descriptions():
    assert as_blocks(["continuous", ("categorical", 4), Block("binary")]) == (
        Block("continuous"),
        Block("categorical", 4),
        Block("binary"),
    )
    with pytest.raises(ValueError, match="not one of"):
        Block("numeric")
    with pytest.raises(ValueError, match="binary column has 2 levels"):
        Block("binary", 3)
    with pytest.raises(ValueError, match="at least one column"):
        CompositeLikelihood([])
