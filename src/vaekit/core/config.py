"""Typed configuration of a model, and the JSON round trip every config shares.

Everything needed to rebuild a model lives in `ModelConfig`; it is stored inside every weights
file, so a `model.safetensors` is self-describing. The data, training and run configs live in
their own layers (`vaekit.data.config`, `vaekit.train.config`, `vaekit.runs.config`) and use
the checks and the JSON round trip defined here.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
# Fields added after files were first written: a saved file without them still loads (strict
# loading requires every other field), taking the default, which is what those files meant.
ADDED = {"added": "0.2"}
# The class priors p(z|y) of observed labels (the conditional VAE); "cluster" infers y.
CLASS_PRIORS = ("class", "class-full")
# The kinds of a table's columns (likelihood "composite"; vaekit.core.composite)
NUMERIC_KINDS = ("continuous", "integer")
COLUMN_KINDS = (*NUMERIC_KINDS, "categorical", "binary")
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned", "composite")


class ConfigError(ValueError):
    """A configuration is missing a field, has an unknown one, or holds a bad value."""


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@dataclass
class ModelConfig:
    """What a model is: enough to rebuild it with fresh weights."""

    event_shape: tuple[int, ...] = (1, 8, 8)  # one example: (C, H, W) images or (D,) rows
    latent_dim: int = 16
    arch: str = "mlp"  # mlp | conv
    hidden: tuple[int, ...] = (512, 256)  # MLP hidden sizes (encoder; decoder mirrors)
    conv_channels: tuple[int, ...] = (32, 64)  # one stride-2 5x5 conv per entry
    activation: str = "relu"  # relu | gelu | elu | tanh | softplus | leaky_relu
    likelihood: str = "bernoulli"  # bernoulli | gaussian | gaussian-learned | composite
    sigma: float = 1.0  # fixed sigma of 'gaussian'; initial sigma of 'gaussian-learned'
    learned_sigma: str = "per-dim"  # per-dim | shared  (only for gaussian-learned)
    # normal | mixture | class | class-full | cluster (priors.build_prior); "auto" resolves on
    # construction: class-full for a conditional model (its samples are the asked class far more
    # often than under N(0, I): the docs' conditional benchmark page), else normal
    prior: str = "auto"
    mixture_components: int = 10  # K of the mixture prior
    # The class variable y (see DESIGN.md): observed and fed to the networks (conditional),
    # observed and choosing p(z|y) (prior "class" or "class-full"), or inferred (prior "cluster").
    num_classes: int = field(default=0, metadata=ADDED)  # classes of y (clusters for "cluster")
    conditional: bool = field(default=False, metadata=ADDED)  # q(z|x,y), p(x|z,y): one-hot y in
    class_names: tuple[str, ...] = field(default=(), metadata=ADDED)  # shown in pictures/CSVs
    # False: an encoder-only model (objective infomax): no decoder or likelihood, a critic
    # T(x, z) instead, MLP critic_hidden layers into a critic_dim-wide score space
    decoder: bool = field(default=True, metadata=ADDED)
    critic_hidden: tuple[int, ...] = field(default=(256,), metadata=ADDED)
    critic_dim: int = field(default=64, metadata=ADDED)
    # the critic scores z against x + critic_noise * std(x) * sqrt(D) * eps while training
    # (vaekit.core.critic: it tells the encoder which information to keep)
    critic_noise: float = field(default=0.2, metadata=ADDED)
    # auto | on | off: in training the encoder-only model's encoder sees a Bernoulli sample of
    # images, translated by round(side / 28) pixels (vaekit.core.augment); auto = on for images, off
    # for tables ("on" insists). Files saved before it trained without it.
    augment: str = field(default="auto", metadata={**ADDED, "saved_default": "off"})
    # Semi-supervised learning (prior "cluster" with y observed on some rows, -1 on the others):
    # the weight alpha of the classification term alpha * -log q(y|x) on labelled rows (Kingma
    # et al. 2014, M2), added to the loss; 0: no such term (the clusterer).
    label_weight: float = field(default=0.0, metadata=ADDED)
    # A table (likelihood "composite", vaekit.core.composite): one entry per column, in the
    # columns' order: "continuous", "integer", "binary" or "categorical:K" (K levels); the
    # event_shape is then (columns,). The column names, levels and transforms are the data's
    # schema (the run's data config), not the model's.
    column_kinds: tuple[str, ...] = field(default=(), metadata=ADDED)

    def __post_init__(self) -> None:
        self.event_shape = tuple(int(s) for s in self.event_shape)
        self.hidden = tuple(int(h) for h in self.hidden)
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        self.class_names = tuple(str(c) for c in self.class_names)
        self.critic_hidden = tuple(int(h) for h in self.critic_hidden)
        self.column_kinds = tuple(str(k) for k in self.column_kinds)
        if not self.event_shape or any(s < 1 for s in self.event_shape):
            raise ConfigError(f"event_shape must be non-empty and positive, got {self.event_shape}")
        check_positive("latent_dim", self.latent_dim)
        check_choice("arch", self.arch, ("mlp", "conv"))
        check_choice(
            "activation",
            self.activation,
            ("relu", "gelu", "elu", "tanh", "softplus", "leaky_relu", "silu"),
        )
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        check_choice("learned_sigma", self.learned_sigma, ("per-dim", "shared"))
        if self.prior == "auto":
            self.prior = "class-full" if self.conditional else "normal"
        check_choice("prior", self.prior, ("normal", "mixture", "class", "class-full", "cluster"))
        check_positive("sigma", self.sigma)
        check_positive("mixture_components", self.mixture_components)
        check_positive("num_classes", self.num_classes, allow_zero=True)
        if self.num_classes == 1:
            raise ConfigError("num_classes must be >= 2 (or 0: none, or taken from the labels)")
        if self.prior in CLASS_PRIORS and not self.conditional:
            raise ConfigError(
                f"prior={self.prior!r} (--conditional-prior {self.prior}) is p(z|y) for "
                "observed labels: set conditional=True (--conditional)"
            )
        if self.prior == "cluster" and self.conditional:
            raise ConfigError(
                "prior='cluster' infers y, conditional=True observes it; pick one "
                "(prior='class' is the class prior for observed labels)"
            )
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"class_names has {len(self.class_names)} names for {self.num_classes} classes"
            )
        check_positive("label_weight", self.label_weight, allow_zero=True)
        if self.label_weight and self.prior != "cluster":
            raise ConfigError(
                "label_weight trains q(y|x) of the clustering prior: it needs prior='cluster'"
            )
        check_positive("critic_dim", self.critic_dim)
        check_positive("critic_noise", self.critic_noise, allow_zero=True)
        check_choice("augment", self.augment, ("auto", "on", "off"))
        if self.augment == "on" and (self.decoder or len(self.event_shape) != 3):
            raise ConfigError(
                "augment='on' (--augment on) is the encoder-only model's view of images: it "
                "needs decoder=False (--objective infomax) and image data (C, H, W)"
            )
        if not self.decoder and self.conditional:
            raise ConfigError("an encoder-only model (decoder=False) cannot be conditional yet")
        if any(h < 1 for h in (*self.hidden, *self.critic_hidden)) or any(
            c < 1 for c in self.conv_channels
        ):
            raise ConfigError("hidden sizes and conv channels must be positive")
        self._check_table()
        if self.arch == "conv":
            if len(self.event_shape) != 3:
                raise ConfigError(
                    f"arch=conv needs image data of shape (C, H, W), got {self.event_shape}; "
                    "use --arch mlp for tabular data or give --image-shape"
                )
            if not self.conv_channels:
                raise ConfigError("arch=conv needs at least one entry in conv_channels")

    def _check_table(self) -> None:
        """A composite likelihood needs its column kinds (one per column of event_shape), an
        MLP and a decoder; the other likelihoods take none."""
        if self.likelihood != "composite":
            if self.column_kinds:
                raise ConfigError(
                    f"column_kinds describe a table's columns for likelihood='composite', not "
                    f"{self.likelihood!r}; drop them or set likelihood='composite'"
                )
            return
        blocks = column_blocks(self.column_kinds)
        if not blocks:
            raise ConfigError("likelihood='composite' needs column_kinds, one per table column")
        if self.event_shape != (len(blocks),):
            raise ConfigError(
                f"a table of {len(blocks)} columns has event_shape ({len(blocks)},), got "
                f"{self.event_shape}"
            )
        if self.arch != "mlp" or not self.decoder:
            raise ConfigError("a table (likelihood='composite') takes arch='mlp' and a decoder")


def column_blocks(kinds: tuple[str, ...]) -> list[tuple[str, int]]:
    """Column kinds ("continuous", "integer", "binary", "categorical:K") as (kind, levels)
    pairs (levels: K of a categorical column, 2 of a binary one, 0 of a numeric one); a
    one-line ConfigError for anything else."""
    out = []
    for entry in kinds:
        kind, _, levels = entry.partition(":")
        if kind not in COLUMN_KINDS or bool(levels) != (kind == "categorical"):
            raise ConfigError(
                f"column kind {entry!r} is not one of continuous, integer, binary, categorical:K"
            )
        k = 2 if kind == "binary" else 0
        if levels:
            try:
                k = int(levels)
            except ValueError:
                k = 0
            if k < 1:
                raise ConfigError(f"column kind {entry!r}: K must be a positive integer")
        out.append((kind, k))
    return out


def table_widths(kinds: tuple[str, ...]) -> tuple[int, int]:
    """(encoder input width, decoder output width) of a table: the decoder emits K logits per
    categorical column and one parameter per other column (P); the encoder sees those P values
    (one-hot levels) and one observed bit per column (P + columns)."""
    blocks = column_blocks(kinds)
    params = sum(k if kind == "categorical" else 1 for kind, k in blocks)
    return params + len(blocks), params


def check_buildable(cfg: ModelConfig) -> None:
    """What a model needs beyond a valid config: the number of classes of its y. (A config may
    leave num_classes at 0 until the data's labels are seen, as `vaekit train` does.)"""
    if (cfg.conditional or cfg.prior in (*CLASS_PRIORS, "cluster")) and cfg.num_classes < 2:
        what = "conditional=True" if cfg.conditional else f"prior={cfg.prior!r}"
        raise ConfigError(f"{what} needs num_classes >= 2, got {cfg.num_classes}")


# --- JSON round trip -------------------------------------------------------------------------


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[T], data: Any, *, strict: bool = False, where: str = "") -> T:
    """Build `cls` from parsed JSON, checking field names and types.

    strict: every field must be present (used for saved files, where a missing field means
    the file is damaged or from an incompatible version); otherwise defaults fill gaps.
    """
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    if strict:
        added = {f.name for f in dataclasses.fields(cls) if f.metadata.get("added")}  # type: ignore[arg-type]
        missing = sorted(names - set(data) - added)
        if missing:
            raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
    kwargs = {k: _coerce(hints[k], v, strict, f"{where}.{k}") for k, v in data.items()}
    if strict:  # what a file written before an added field meant, where not its default
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data and "saved_default" in f.metadata:
                kwargs[f.name] = f.metadata["saved_default"]
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded by the checks above
        raise ConfigError(f"{where}: {e}") from None


def _coerce(tp: Any, value: Any, strict: bool, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, strict=strict, where=where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, strict, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        return tuple(_coerce(item, v, strict, where) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
