"""A composite likelihood p(x|z) for tables: one block of decoder outputs per column.

A table row x: (batch, C) float, one value per column, in the column order of the table:
- a numeric column (`continuous` or `integer`) holds its transformed value (the data layer's
  fitted transform); its block is one parameter, the Gaussian mean, with a learned sigma per
  column (clamped like `LearnedGaussian`'s);
- a `categorical` column holds its level index 0..K-1 (as a float); its block is K logits, and
  the softmax runs over that column's own K levels only, never across columns;
- a `binary` column holds 0 or 1; its block is one logit (Bernoulli).

A missing cell is NaN in x. The mask of observed cells is `~isnan(x)`, so it travels inside x
through the trainer's (x, y) batches unchanged; a missing cell adds 0 to log p(x|z). The
decoder's output width is `param_dim` (1 per numeric or binary column, K per categorical one),
not C; the encoder sees `encoder_input(x)`: (batch, feature_dim), NaN-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.core import likelihoods
from vaekit.core.config import ModelConfig, column_blocks
from vaekit.core.likelihoods import LOG_2PI, LOG_SIGMA_MAX, LOG_SIGMA_MIN, Likelihood

NUMERIC = ("continuous", "integer")
KINDS = (*NUMERIC, "categorical", "binary")


@dataclass(frozen=True)
class Block:
    """One column as the likelihood sees it: its kind and, for a categorical one, its number
    of levels (binary: 2; numeric: 0)."""

    kind: str
    levels: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "categorical" and self.levels < 1:
            raise ValueError(f"a categorical column needs >= 1 level, got {self.levels}")
        if self.kind == "binary" and self.levels not in (0, 2):
            raise ValueError(f"a binary column has 2 levels, got {self.levels}")

    @property
    def width(self) -> int:
        """Decoder parameters of this column: K logits for a categorical one, else 1."""
        return self.levels if self.kind == "categorical" else 1


def as_blocks(blocks: Iterable[Block | tuple[str, int] | str]) -> tuple[Block, ...]:
    """Blocks from Block objects, (kind, levels) pairs or bare numeric/binary kinds."""
    out = []
    for b in blocks:
        if isinstance(b, Block):
            out.append(b)
        elif isinstance(b, str):
            out.append(Block(b))
        else:
            kind, levels = b
            out.append(Block(str(kind), int(levels)))
    if not out:
        raise ValueError("a table needs at least one column")
    return tuple(out)


def _index(values: Sequence[int]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.long)


class CompositeLikelihood(Likelihood):
    """log p(x|z) = sum over observed columns of each column's log-density, in nats.

    Shapes: params (S, batch, P) or (batch, P) with P = `param_dim`; x (batch, C) with C the
    number of columns, NaN where a cell is missing; log_prob -> (S, batch) or (batch,).
    """

    name = "composite"
    # training only: each observed cell is hidden from the encoder with this probability (the
    # likelihood still scores it), so q(z|x) learns to read rows with gaps; a valid ELBO still
    # (any q is); evaluation, sampling and imputation see every observed cell
    cell_dropout = 0.2

    def __init__(self, blocks: Iterable[Block | tuple[str, int] | str], sigma: float = 1.0):
        self.blocks = as_blocks(blocks)
        super().__init__((len(self.blocks),))
        widths = [b.width for b in self.blocks]
        offsets = [sum(widths[:i]) for i in range(len(widths))]
        self.param_dim = sum(widths)
        self.param_shape = (self.param_dim,)
        self.feature_dim = self.param_dim + len(self.blocks)  # values + one mask bit a column
        kinds = [b.kind for b in self.blocks]
        num = [i for i, k in enumerate(kinds) if k in NUMERIC]
        binary = [i for i, k in enumerate(kinds) if k == "binary"]
        cat = [i for i, k in enumerate(kinds) if k == "categorical"]
        k_max = max([self.blocks[i].levels for i in cat], default=1)
        pad = self.param_dim  # index of a -inf column appended to params
        cat_idx = [
            [offsets[i] + j if j < self.blocks[i].levels else pad for j in range(k_max)]
            for i in cat
        ]
        for name, t in (
            ("num_cols", _index(num)),
            ("num_params", _index(offsets[i] for i in num)),
            ("bin_cols", _index(binary)),
            ("bin_params", _index(offsets[i] for i in binary)),
            ("cat_cols", _index(cat)),
            ("cat_params", torch.tensor(cat_idx, dtype=torch.long).reshape(len(cat), k_max)),
            # from the concatenation [numeric, binary, categorical] back to the column order
            ("order", torch.argsort(_index([*num, *binary, *cat]))),
        ):
            self.register_buffer(name, t, persistent=False)
        self.log_sigma = nn.Parameter(torch.full((len(num),), math.log(sigma)))

    def extra_repr(self) -> str:
        return f"columns={len(self.blocks)}, param_dim={self.param_dim}"

    def _log_sigma(self) -> torch.Tensor:
        return self.log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)

    def _cat_logits(self, params: torch.Tensor) -> torch.Tensor:
        """(..., P) -> (..., n_categorical, K_max) logits, -inf beyond a column's levels."""
        pad = params.new_full((*params.shape[:-1], 1), -math.inf)
        return torch.cat([params, pad], -1)[..., self.cat_params]

    def _reorder(self, num: torch.Tensor, binary: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        return torch.cat([num, binary, cat], -1)[..., self.order]

    # --- densities -----------------------------------------------------------------------

    def log_prob_columns(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Each cell's log-density: params (..., batch, P), x (batch, C) -> (..., batch, C),
        nats, 0 where the cell is missing (NaN)."""
        observed = ~torch.isnan(x)
        x = torch.nan_to_num(x, nan=0.0)
        lead = torch.broadcast_shapes(params.shape[:-1], x.shape[:-1])
        # numeric: N(x; mu, sigma^2)
        log_sigma = self._log_sigma()
        z = (x[..., self.num_cols] - params[..., self.num_params]) * torch.exp(-log_sigma)
        num = -(0.5 * z**2 + log_sigma + 0.5 * LOG_2PI)
        # binary: Bernoulli on a logit
        logits = params[..., self.bin_params]
        target = x[..., self.bin_cols].to(logits.dtype).expand_as(logits)
        binary = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        # categorical: log-softmax over the column's own levels, at the observed level
        logp = torch.log_softmax(self._cat_logits(params), -1)
        idx = x[..., self.cat_cols].long().expand(logp.shape[:-1])
        cat = logp.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        terms = self._reorder(num.expand(*lead, -1), binary.expand(*lead, -1), cat)
        return torch.where(observed, terms, torch.zeros((), dtype=terms.dtype))

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over the observed cells: (S, batch) (or (batch,)), nats."""
        return self.log_prob_columns(params, x).sum(-1)

    def log_prob_pairs(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_b | params_m) over x_b's observed cells for every pair of M parameter sets
        and B rows: params (M, P), x (B, C) -> (M, B), nats. Equal to log_prob(params[:, None]
        .expand(M, B, P), x), with each set's level log-probabilities computed once, not once a
        row (imputation scores every row against every exemplar)."""
        observed = ~torch.isnan(x)
        x = torch.nan_to_num(x, nan=0.0)
        log_sigma = self._log_sigma()
        z = (x[None, :, self.num_cols] - params[:, None, self.num_params]) * torch.exp(-log_sigma)
        num = -(0.5 * z**2 + log_sigma + 0.5 * LOG_2PI)  # (M, B, numeric)
        logits = params[:, None, self.bin_params]
        binary = torch.where(x[None, :, self.bin_cols] > 0.5, F.logsigmoid(logits),
                             F.logsigmoid(-logits))  # (M, B, binary)
        logp = torch.log_softmax(self._cat_logits(params), -1)  # (M, categorical, K_max)
        cols = torch.arange(len(self.cat_cols), device=x.device)
        cat = logp[:, cols[None, :], x[:, self.cat_cols].long()]  # (M, B, categorical)
        terms = self._reorder(num, binary, cat)
        return torch.where(observed, terms, torch.zeros((), dtype=terms.dtype)).sum(-1)

    # --- data space ----------------------------------------------------------------------

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """(..., P) -> (..., C): the Gaussian mean of a numeric column, P(x = 1) of a binary
        one, the most probable level (its index, as a float) of a categorical one."""
        num = params[..., self.num_params]
        binary = torch.sigmoid(params[..., self.bin_params])
        cat = self._cat_logits(params).argmax(-1).to(params.dtype)
        return self._reorder(num, binary, cat)

    def level_probabilities(self, params: torch.Tensor) -> torch.Tensor:
        """(..., P) -> (..., n_categorical, K_max): each categorical column's level
        probabilities (softmax over its own levels; 0 beyond a column's K), in column order."""
        return torch.softmax(self._cat_logits(params), -1)

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One draw of x per row: (..., P) -> (..., C), numeric values, 0/1, level indices."""
        mu = params[..., self.num_params]
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        num = mu + torch.exp(self._log_sigma()) * eps
        p = torch.sigmoid(params[..., self.bin_params])
        binary = torch.bernoulli(p, generator=generator)
        probs = torch.softmax(self._cat_logits(params), -1)
        if probs.numel():
            flat = probs.reshape(-1, probs.shape[-1])
            cat = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
        else:
            cat = probs.new_zeros(probs.shape[:-1])
        return self._reorder(num, binary, cat.to(params.dtype))

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder sees: x (batch, C) -> (batch, feature_dim), no NaN.

        Per column, in order: the numeric value (0 where missing: the centre of the
        transformed scale), the 0/1 value of a binary column (0 where missing), the one-hot
        level of a categorical column (all zeros where missing); then one observed bit per
        column (1 observed, 0 missing).
        """
        observed = ~torch.isnan(x)
        if self.training and self.cell_dropout > 0:  # practice for rows with gaps (impute)
            observed = observed & (torch.rand(x.shape, device=x.device) >= self.cell_dropout)
        clean = torch.nan_to_num(x, nan=0.0).masked_fill(~observed, 0.0)
        values = x.new_zeros((*x.shape[:-1], self.param_dim + 1))  # +1: the pad slot
        values[..., self.num_params] = clean[..., self.num_cols]
        values[..., self.bin_params] = clean[..., self.bin_cols]
        if len(self.cat_cols):
            level = clean[..., self.cat_cols].long().clamp(0, self.cat_params.shape[1] - 1)
            slots = self.cat_params[torch.arange(len(self.cat_cols), device=x.device), level]
            slots = torch.where(observed[..., self.cat_cols], slots, self.param_dim)
            values.scatter_(-1, slots, 1.0)
        return torch.cat([values[..., :-1], observed.to(x.dtype)], -1)

    def check_support(self, x: torch.Tensor) -> None:
        """A one-line ValueError for x outside the support: infinity anywhere (NaN is a
        missing cell), a binary cell not 0/1, a categorical cell not a level index."""
        if x.dim() < 1 or x.shape[-1] != len(self.blocks):
            raise ValueError(
                f"a table row has {len(self.blocks)} columns, got shape {tuple(x.shape)}"
            )
        if torch.isinf(x).any():
            raise ValueError("data holds infinite values; mark a cell missing with NaN")
        for i in [*self.bin_cols.tolist(), *self.cat_cols.tolist()]:
            v = x[..., i]
            top = 1 if self.blocks[i].kind == "binary" else self.blocks[i].levels - 1
            bad = ~torch.isnan(v) & ((v != v.round()) | (v < 0) | (v > top))
            if bad.any():
                raise ValueError(
                    f"column {i} is {self.blocks[i].kind} and takes a level index in 0..{top} "
                    f"(NaN if missing), got {float(v[bad][0]):g}"
                )


def build_likelihood(cfg: ModelConfig) -> Likelihood:
    """The likelihood a model config describes: a table's CompositeLikelihood (likelihood
    "composite": one block per column of `cfg.column_kinds`, numeric sigmas starting at
    cfg.sigma), else `vaekit.core.likelihoods.build_likelihood`'s."""
    if cfg.likelihood == "composite":
        return CompositeLikelihood(column_blocks(cfg.column_kinds), cfg.sigma)
    return likelihoods.build_likelihood(cfg)
