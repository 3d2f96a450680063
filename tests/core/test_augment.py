"""The encoder-only model's cheap random views (vaekit.core.augment): the noise table's numbers, the
Bernoulli sample, the translation, when the config augments, and what the encoder sees."""

from __future__ import annotations

import pytest
import torch

from vaekit.core import augment
from vaekit.core.config import ConfigError, ModelConfig, from_dict, to_dict
from vaekit.core.critic import encoder_input, infomax_terms
from vaekit.core.model import VAE


def mnist_like(n: int = 64, side: int = 28) -> torch.Tensor:
    """Images in [0, 1] with a blank border (as MNIST's), (n, 1, side, side)."""
    torch.manual_seed(3)
    x = torch.zeros(n, 1, side, side)
    x[..., 4:-4, 4:-4] = torch.rand(n, 1, side - 8, side - 8)
    return x


def test_uniform_numbers_are_uniform_seeded_and_fresh_each_call():
    like = torch.empty(128, 1, 28, 28)
    torch.manual_seed(0)
    a, b = augment.uniform_like(like), augment.uniform_like(like)
    assert a.shape == like.shape and a.dtype == like.dtype
    assert float(a.min()) >= 0 and float(a.max()) < 1
    assert abs(float(a.mean()) - 0.5) < 0.01 and abs(float(a.var()) - 1 / 12) < 0.002
    assert not torch.equal(a, b)  # another window of the table
    torch.manual_seed(0)
    assert torch.equal(augment.uniform_like(like), a)  # the offsets follow torch's seed
    noise = augment.unit_noise_like(like)
    assert abs(float(noise.mean())) < 0.02 and abs(float(noise.var()) - 1) < 0.02
    # more numbers than the table holds: drawn fresh instead
    big = augment.uniform_like(torch.empty(augment.TABLE_SIZE + 1))
    assert big.shape == (augment.TABLE_SIZE + 1,) and 0 <= float(big.min()) < float(big.max()) < 1


def test_the_bernoulli_sample_has_the_pixel_as_its_probability():
    torch.manual_seed(0)
    p = torch.linspace(0, 1, 11).repeat(8, 1)  # (8, 11), every column one probability
    draws = torch.stack([augment.bernoulli_sample(p) for _ in range(400)])
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    freq = draws.mean(dim=(0, 1))  # 3,200 draws per probability: sd <= 0.009
    torch.testing.assert_close(freq, p[0], atol=0.035, rtol=0)
    assert freq[0] == 0 and freq[-1] == 1  # x = 0 and x = 1 are certain
    # a translated (non-contiguous) view in, a contiguous sample out
    view = torch.full((4, 1, 10, 10), 0.5).unfold(2, 8, 1).unfold(3, 8, 1)[:, :, 1, 1]
    assert not view.is_contiguous() and augment.bernoulli_sample(view).is_contiguous()


def test_translation_moves_the_whole_batch_by_at_most_p_pixels_zeros_in():
    x = mnist_like(n=16)
    seen = set()
    torch.manual_seed(0)
    for _ in range(60):
        out = augment.translate(x, 1)
        assert out.shape == x.shape
        matches = [
            (dy, dx)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if torch.equal(out, torch.roll(x, (dy, dx), dims=(2, 3)))  # blank border: no wrap
        ]
        assert len(matches) == 1  # one offset for every example of the batch
        seen.add(matches[0])
    assert len(seen) == 9
    assert augment.translate(x, 0) is x
    edge = torch.ones(2, 1, 6, 6)
    shifted = [augment.translate(edge, 2) for _ in range(30)]
    assert any(float(s.sum()) < 36 * 2 for s in shifted)  # zeros come in from outside


@pytest.mark.parametrize("eager_cpu", [True, False])
def test_the_encoders_view_is_a_translated_bernoulli_sample(eager_cpu, monkeypatch):
    """Both ways of drawing it: fused on the CPU, translate-then-sample elsewhere (a GPU, or
    under torch.compile, which the patch stands in for)."""
    if not eager_cpu:
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    binary = (mnist_like(n=8) > 0.5).float()  # a Bernoulli sample of 0/1 pixels is themselves
    seen = set()
    torch.manual_seed(0)
    for _ in range(60):
        out = augment.encoder_view(binary, 1)
        assert out.is_contiguous() and out.shape == binary.shape
        offsets = [
            (dy, dx)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if torch.equal(out, torch.roll(binary, (dy, dx), dims=(2, 3)))
        ]
        assert len(offsets) == 1
        seen.add(offsets[0])
    assert len(seen) == 9
    grey = mnist_like(n=256)
    sample = augment.encoder_view(grey, 1)
    assert set(sample.unique().tolist()) == {0.0, 1.0}
    assert abs(float(sample.mean()) - float(grey.mean())) < 0.003  # the mass of x, moved


@pytest.mark.parametrize(
    ("shape", "augment_", "pixels"),
    [
        ((1, 28, 28), "auto", 1),  # MNIST: a Bernoulli sample shifted by a pixel
        ((3, 64, 64), "auto", 2),
        ((1, 15, 15), "auto", 1),
        ((1, 8, 8), "auto", 0),  # the 8x8 digits: the Bernoulli sample alone, no shift
        ((1, 14, 14), "on", 0),
        ((64,), "auto", None),  # tables: never
        ((1, 28, 28), "off", None),
    ],
)
def test_when_the_config_augments(shape, augment_, pixels):
    cfg = ModelConfig(event_shape=shape, decoder=False, augment=augment_)
    assert augment.encoder_pixels(cfg) == pixels
    assert augment.encoder_pixels(ModelConfig(event_shape=shape)) is None  # a VAE: never


def test_bad_augment_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="augment='maybe' is not one of auto, on, off"):
        ModelConfig(event_shape=(1, 28, 28), decoder=False, augment="maybe")
    with pytest.raises(ConfigError, match="needs decoder=False"):
        ModelConfig(event_shape=(1, 28, 28), augment="on")
    with pytest.raises(ConfigError, match=r"image data \(C, H, W\)"):
        ModelConfig(event_shape=(30,), decoder=False, augment="on")


def test_a_config_saved_before_the_field_means_no_augmentation():
    saved = to_dict(ModelConfig(event_shape=(1, 28, 28), decoder=False))
    assert saved.pop("augment") == "auto"
    assert from_dict(ModelConfig, saved, strict=True).augment == "off"  # a saved file: as trained
    assert from_dict(ModelConfig, saved).augment == "auto"  # a new config: the default


def test_augmenting_models_take_images_in_0_1_only():
    model = VAE.from_config(ModelConfig(event_shape=(1, 28, 28), decoder=False, latent_dim=2))
    wrong = r"needs data in \[0, 1\], got values from -1 .*--augment off"
    with pytest.raises(ValueError, match=wrong):
        model.encode(mnist_like() * 2 - 1)
    plain = ModelConfig(event_shape=(1, 28, 28), decoder=False, latent_dim=2, augment="off")
    VAE.from_config(plain).encode(mnist_like() * 2 - 1)  # no augmentation, no range


def test_the_encoder_sees_the_augmented_view_in_training_only():
    model = VAE.from_config(ModelConfig(event_shape=(1, 28, 28), decoder=False, latent_dim=2))
    x = mnist_like()
    seen: list[torch.Tensor] = []
    model.encoder.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    infomax_terms(model.train(), x)
    assert set(seen[-1].unique().tolist()) == {0.0, 1.0}  # a Bernoulli sample
    assert abs(float(seen[-1].mean()) - float(x.mean())) < 0.01  # of x
    infomax_terms(model.eval(), x)
    assert torch.equal(seen[-1], x)
    assert encoder_input(model, x) is x
    off = VAE.from_config(ModelConfig(event_shape=(1, 28, 28), decoder=False, augment="off"))
    assert encoder_input(off.train(), x) is x


# --- the semi-supervised classifier's moved copies ---------------------------------------------


def test_moved_images_move_a_little_each_their_own_way_and_repeat_under_a_seed():
    """A bright 2x2 block at the centre ends up at most move_pixels * sqrt(2) away (a shift of
    up to move_pixels per axis, turned by the rotation); every row draws its own move; the
    copies keep the batch's shape, range and mass."""
    assert augment.move_pixels(28) == 2 and augment.move_pixels(8) == 1
    assert augment.move_pixels(64) == 5
    x = torch.zeros(64, 1, 28, 28)
    x[..., 13:15, 13:15] = 1.0
    torch.manual_seed(0)
    m = augment.moved(x)
    assert m.shape == x.shape and float(m.min()) >= 0 and float(m.max()) <= 1 + 1e-6
    grid = torch.arange(28.0)
    mass = m.sum((1, 2, 3))
    cy = (m.sum(3).squeeze(1) * grid).sum(1) / mass
    cx = (m.sum(2).squeeze(1) * grid).sum(1) / mass
    dy, dx = cy - 13.5, cx - 13.5
    assert float((dy**2 + dx**2).sqrt().max()) <= 2 * 2**0.5 + 1e-4
    torch.testing.assert_close(mass, torch.full((64,), 4.0), rtol=0.01, atol=0)  # resampled, kept
    assert float(dy.min()) < -0.5 < 0.5 < float(dy.max())  # both ways, and not the same move
    assert len({round(float(v), 3) for v in dx}) > 32
    torch.manual_seed(0)
    torch.testing.assert_close(augment.moved(x), m)
