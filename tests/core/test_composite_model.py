"""A VAE over a mixed table: ModelConfig's column kinds, the networks' widths, NaN cells."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.core.config import ConfigError, ModelConfig, from_dict, table_widths, to_dict
from vaekit.core.model import VAE

KINDS = ("continuous", "categorical:3", "binary", "integer")
NAN = math.nan


def table_model(kinds: tuple[str, ...] = KINDS) -> VAE:
    torch.manual_seed(0)
    cfg = ModelConfig(
        event_shape=(len(kinds),),
        likelihood="composite",
        column_kinds=kinds,
        hidden=(16,),
        latent_dim=2,
    )
    return VAE.from_config(cfg)


def test_widths_follow_the_blocks() -> None:
    model = table_model()
    assert table_widths(KINDS) == (6 + 4, 6)
    assert model.encoder.net[0].in_features == model.likelihood.feature_dim == 10
    assert model.decoder.net[-1].out_features == model.likelihood.param_dim == 6
    z = torch.randn(5, 3, 2)
    assert model.decoder_params(z).shape == (5, 3, 6)


def test_missing_cells_train_and_score() -> None:
    model = table_model()
    x = torch.tensor([[0.1, 2.0, 1.0, NAN], [NAN, NAN, 0.0, 1.0], [NAN] * 4])
    loss = model.loss(x)
    loss.total.backward()
    assert math.isfinite(float(loss.total.detach()))
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(model.log_likelihood(x, k=8)).all()
    assert model.sample(4).shape == (4, 4)
    assert model.reconstruct(x).shape == (3, 4)


def test_save_and_load(tmp_path) -> None:
    for kinds in (KINDS, ("categorical:3", "binary")):  # the second: no numeric column
        model = table_model(kinds)
        model.save(tmp_path / "m.safetensors")
        back = VAE.load(tmp_path / "m.safetensors")
        assert back.config == model.config
        for k, v in model.state_dict().items():
            assert torch.equal(v, back.state_dict()[k]), k


def test_config_round_trip_and_old_files() -> None:
    cfg = table_model().config
    assert from_dict(ModelConfig, to_dict(cfg), strict=True) == cfg
    old = to_dict(ModelConfig())
    del old["column_kinds"]  # a file written before tables
    assert from_dict(ModelConfig, old, strict=True).column_kinds == ()


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"column_kinds": ()}, "needs column_kinds"),
        ({"column_kinds": ("categorical",)}, "categorical:K"),
        ({"column_kinds": ("categorical:0",)}, "positive"),
        ({"column_kinds": ("text",)}, "not one of"),
        ({"event_shape": (3,)}, "event_shape"),
        ({"decoder": False}, "decoder"),
    ],
)
def test_bad_table_configs(changes: dict, words: str) -> None:
    kw = {"event_shape": (2,), "likelihood": "composite", "column_kinds": ("binary", "integer")}
    with pytest.raises(ConfigError, match=words):
        ModelConfig(**{**kw, **changes})


def test_column_kinds_need_the_composite_likelihood() -> None:
    with pytest.raises(ConfigError, match="composite"):
        ModelConfig(event_shape=(1,), likelihood="gaussian", column_kinds=("binary",))
