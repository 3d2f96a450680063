"""Figures (vaekit.viz) and the HTML report (vaekit.viz.report)."""

from __future__ import annotations

import csv
import html
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import norm
from torch import nn

from vaekit import VAE
from vaekit import viz as plots
from vaekit.core.config import ModelConfig
from vaekit.viz.report import write_report


class FakeVAE(nn.Module):
    """The VAE model API (encode, decode, sample, reconstruct) with linear maps.

    Records the shapes decode is called with."""

    def __init__(self, event_shape: tuple[int, ...] = (1, 8, 8), latent_dim: int = 2) -> None:
        super().__init__()
        torch.manual_seed(123)
        self.config = ModelConfig(event_shape=event_shape, latent_dim=latent_dim)
        d = math.prod(event_shape)
        self.enc = nn.Linear(d, 2 * latent_dim)
        self.dec = nn.Linear(latent_dim, d)
        self.decode_shapes: list[tuple[int, ...]] = []

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.enc(x.flatten(1)).chunk(2, dim=-1)
        return mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self.decode_shapes.append(tuple(z.shape))
        out = torch.sigmoid(self.dec(z))
        return out.reshape(*z.shape[:-1], *self.config.event_shape)

    def sample(self, n: int) -> torch.Tensor:
        return self.decode(torch.randn(n, self.config.latent_dim))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a valid PNG; fails the test for anything else."""
    path = Path(path)
    assert path.is_file(), path
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()  # decodes the whole file: catches truncation
        return im.size


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def write_metrics(path: Path, epochs: int = 5, *, val: bool = True) -> Path:
    fields = ["epoch", "train_loss", "train_rate", "train_distortion",
              "val_loss", "val_rate", "val_distortion", "seconds"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for e in range(1, epochs + 1):
            row = {"epoch": e, "train_loss": 40 / e, "train_rate": 2 + e / 10,
                   "train_distortion": 38 / e - 2, "seconds": 0.5}
            if val:
                row |= {"val_loss": 41 / e, "val_rate": 2.1 + e / 10, "val_distortion": 39 / e}
            else:
                row |= {"val_loss": "", "val_rate": "", "val_distortion": ""}
            w.writerow(row)
    return path


@pytest.fixture
def digits_like() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(300, 1, 8, 8, generator=g), torch.arange(300) % 10


# --- array level ------------------------------------------------------------------------------


def test_as_images_shapes():
    x = torch.rand(5, 1, 8, 8)
    assert plots.as_images(x, (1, 8, 8)).shape == (5, 1, 8, 8)
    assert plots.as_images(torch.rand(5, 8, 8), (8, 8)).shape == (5, 1, 8, 8)
    assert plots.as_images(np.random.rand(5, 3, 4, 4), (3, 4, 4)).shape == (5, 3, 4, 4)
    assert plots.as_images(torch.rand(5, 10), (10,)) is None  # tabular
    assert plots.as_images(torch.rand(5, 7, 4, 4), (7, 4, 4)) is None  # not displayable


def test_image_grid_400_images_is_one_composed_imshow(tmp_path, monkeypatch):
    """One tiled array drawn once, not 400 subplots (what keeps big grids cheap)."""
    from matplotlib.axes import Axes

    calls = []
    original = Axes.imshow

    def counting_imshow(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", counting_imshow)
    imgs = torch.rand(400, 1, 8, 8) * 3 - 1  # out of range: must be clipped, not fail
    path = plots.image_grid(imgs, tmp_path / "grid.png")
    assert len(calls) == 1
    w, h = png_size(path)
    assert w == h and 400 <= w <= 1000  # 20 x 20 tiles of 8 px + gaps, upscaled
    # RGB, non-square, titled
    path = plots.image_grid(np.random.rand(10, 3, 6, 6), tmp_path / "rgb.png", nrow=5,
                            title="ten & <more>")
    w, h = png_size(path)
    assert w > h  # 5 columns x 2 rows (+ title)


def test_image_grid_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plots.image_grid(torch.rand(4, 2, 8, 8), tmp_path / "x.png")


def test_reconstruction_grid(tmp_path):
    x, x_hat = torch.rand(20, 1, 8, 8), torch.rand(20, 1, 8, 8)
    w, h = png_size(plots.reconstruction_grid(x, x_hat, tmp_path / "rec.png", n=16))
    assert w > 3 * h  # one row of 16 inputs over one row of 16 reconstructions, plus labels
    w2, _ = png_size(plots.reconstruction_grid(x, x_hat, tmp_path / "rec4.png", n=4))
    assert w2 < w


def test_manifold_decodes_once_at_gaussian_quantiles(tmp_path):
    calls: list[torch.Tensor] = []

    def decode(z: torch.Tensor) -> torch.Tensor:
        calls.append(z.clone())
        return torch.sigmoid(z.sum(-1)).reshape(-1, 1, 1, 1).expand(-1, 1, 8, 8)

    n = 7
    path = plots.manifold_grid(decode, tmp_path / "m.png", n=n, image_shape=(1, 8, 8))
    assert len(calls) == 1
    z = calls[0]
    assert z.shape == (n * n, 2) and z.dtype == torch.float32
    q = norm.ppf(np.linspace(0.05, 0.95, n))
    np.testing.assert_allclose(np.unique(z[:, 0].numpy()), q, rtol=1e-5)
    np.testing.assert_allclose(np.unique(z[:, 1].numpy()), q, rtol=1e-5)
    # row-major from the top-left: z1 grows to the right, z2 shrinks downwards (larger on top)
    np.testing.assert_allclose(z[0].numpy(), [q[0], q[-1]], rtol=1e-5)
    np.testing.assert_allclose(z[n - 1].numpy(), [q[-1], q[-1]], rtol=1e-5)
    np.testing.assert_allclose(z[-1].numpy(), [q[-1], q[0]], rtol=1e-5)
    w, h = png_size(path)
    assert 300 < w < 1200 and 300 < h < 1200


def test_manifold_rejects_tabular_shape(tmp_path):
    with pytest.raises(ValueError, match="image"):
        plots.manifold_grid(lambda z: z, tmp_path / "m.png", n=4, image_shape=(10,))


def test_latent_projection_uses_pca_above_two_dims():
    g = np.random.default_rng(0)
    means = g.normal(size=(500, 5)) * np.array([5.0, 2.0, 0.5, 0.1, 0.1])
    coords, labels = plots.latent_projection(torch.as_tensor(means))
    assert coords.shape == (500, 2)
    assert labels[0].startswith("PC1 (") and labels[0].endswith("% var)")
    assert labels[1].startswith("PC2 (")
    from sklearn.decomposition import PCA

    ref = PCA(n_components=2).fit(means)
    expected = ref.transform(means)
    for k in range(2):  # principal axes are defined up to sign
        sign = np.sign(coords[:, k] @ expected[:, k])
        np.testing.assert_allclose(coords[:, k] * sign, expected[:, k], atol=1e-6)
    share = float(labels[0].split("(")[1].split("%")[0])
    assert share == pytest.approx(100 * ref.explained_variance_ratio_[0], abs=0.06)
    # 2-D: the coordinates themselves
    two = g.normal(size=(10, 2))
    coords2, labels2 = plots.latent_projection(two)
    np.testing.assert_array_equal(coords2, two)
    assert labels2 == ("z1", "z2")


@pytest.mark.parametrize(
    ("latent", "labels"),
    [(1, "classes"), (1, "none"), (2, "float"), (2, "many"), (6, "classes"), (6, "none")],
)
def test_latent_scatter_variants(tmp_path, latent, labels):
    n = 200
    means = torch.randn(n, latent)
    y = {"classes": torch.arange(n) % 10, "none": None, "many": np.arange(n) % 37,
         "float": np.random.rand(n)}[labels]
    path = plots.latent_scatter(means, y, tmp_path / "lat.png", title="t")
    w, h = png_size(path)
    assert 300 < w < 1200 and 300 < h < 1000


def test_training_curves_with_and_without_validation(tmp_path):
    for epochs, val in ((6, True), (1, False)):  # empty val_* cells; a single epoch
        csv_path = write_metrics(tmp_path / f"m{val}.csv", epochs, val=val)
        w, h = png_size(plots.training_curves(csv_path, tmp_path / f"c{val}.png"))
        assert w > 2 * h  # three panels side by side


# --- plot_run ---------------------------------------------------------------------------------


def test_plot_run_images_2d_latent(tmp_path, digits_like):
    x, y = digits_like
    model = FakeVAE((1, 8, 8), 2)
    model.train()
    metrics = write_metrics(tmp_path / "metrics.csv")
    out = plots.plot_run(model, x, y, tmp_path / "figs", metrics_csv=metrics)
    assert set(out) == {"samples", "reconstructions", "latent", "manifold", "curves"}
    for name, path in out.items():
        assert path == tmp_path / "figs" / f"{name}.png"
        w, h = png_size(path)
        assert min(w, h) >= 100 and max(w, h) <= 2000
    assert model.decode_shapes.count((400, 2)) == 1  # the manifold: one batched decode
    assert (64, 2) in model.decode_shapes  # samples: n_samples in one call
    assert model.training  # mode restored


def test_plot_run_no_manifold_above_two_dims_and_no_curves_without_csv(tmp_path, digits_like):
    x, y = digits_like
    out = plots.plot_run(FakeVAE((1, 8, 8), 5), x, y, tmp_path, n_samples=9,
                         metrics_csv=tmp_path / "missing.csv")
    assert set(out) == {"samples", "reconstructions", "latent"}
    assert not (tmp_path / "manifold.png").exists()


def test_plot_run_tabular_skips_image_figures(tmp_path):
    x = torch.randn(120, 10)
    out = plots.plot_run(FakeVAE((10,), 2), x, None, tmp_path,
                         metrics_csv=write_metrics(tmp_path / "metrics.csv"))
    assert set(out) == {"latent", "curves"}
    for name in ("samples", "reconstructions", "manifold"):
        assert not (tmp_path / f"{name}.png").exists()


def test_plot_run_rgb_and_to_display(tmp_path):
    x = torch.randn(50, 3, 6, 6)  # "standardized" model space
    seen: list[tuple[int, ...]] = []

    def to_display(t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(t.shape))
        return t * 0.25 + 0.5

    out = plots.plot_run(FakeVAE((3, 6, 6), 2), x, np.arange(50) % 3, tmp_path,
                         to_display=to_display, n_samples=16)
    assert set(out) == {"samples", "reconstructions", "latent", "manifold"}
    assert (16, 3, 6, 6) in seen and (400, 3, 6, 6) in seen


def test_plot_run_is_reproducible_and_leaves_global_rng_alone(tmp_path, digits_like):
    x, y = digits_like
    model = FakeVAE((1, 8, 8), 3)
    torch.manual_seed(42)
    before = torch.get_rng_state()
    a = plots.plot_run(model, x, y, tmp_path / "a", seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = plots.plot_run(model, x, y, tmp_path / "b", seed=7)
    c = plots.plot_run(model, x, y, tmp_path / "c", seed=8)
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(pixels(a["samples"]), pixels(b["samples"]))
    assert not np.array_equal(pixels(a["samples"]), pixels(c["samples"]))


def test_plot_run_encodes_at_most_2000_points(tmp_path):
    x = torch.rand(2500, 1, 8, 8)
    model = FakeVAE((1, 8, 8), 2)
    seen: list[int] = []
    encode = model.encode
    model.encode = lambda t: (seen.append(len(t)), encode(t))[1]  # type: ignore[method-assign]
    plots.plot_run(model, x, None, tmp_path, n_samples=4)
    assert sum(seen) == 16 + 2000  # 16 for the reconstructions, 2000 for the latent figure


def test_plot_run_with_real_model(tmp_path, digits_like):
    model = VAE.from_config(ModelConfig(event_shape=(1, 8, 8), latent_dim=2))
    x, y = digits_like
    before = torch.get_rng_state()
    out = plots.plot_run(model, x, y, tmp_path)
    assert torch.equal(torch.get_rng_state(), before)
    assert set(out) == {"samples", "reconstructions", "latent", "manifold"}
    for path in out.values():
        png_size(path)


# --- report -----------------------------------------------------------------------------------


def test_report_escapes_and_references_existing_images(tmp_path):
    figs_dir = tmp_path / "figs"
    figs_dir.mkdir()
    for name in ("samples", "latent"):
        plots.image_grid(torch.rand(4, 1, 8, 8), figs_dir / f"{name}.png")
    images = {"samples": figs_dir / "samples.png", "latent": figs_dir / "latent.png",
              "manifold": figs_dir / "manifold.png"}  # the last one was never written
    figures = {"test ELBO (nats per example)": -23.456789, "test log p(x), IS K=1000": -22.5,
               "bits per dim": 0.5123, "rate": 3.0, "<b>evil</b> & co": "<script>x</script>"}
    config = {"model": {"latent_dim": 2, "note": "</pre><script>alert(1)</script>"}}
    path = write_report(tmp_path, title="Run <1> & more", figures=figures, images=images,
                        config=config)
    assert path == tmp_path / "report.html"
    text = path.read_text()
    assert text.isascii()
    assert "<script" not in text and "http" not in text  # no JS, no external resources
    assert html.escape("Run <1> & more") in text
    assert html.escape("<script>x</script>") in text
    assert html.escape("<b>evil</b> & co") in text
    assert "-23.4568" in text and "nats per example" in text and "bits per dimension" in text
    assert 'src="figs/samples.png"' in text and 'src="figs/latent.png"' in text
    assert "manifold.png" not in text
    assert html.escape('"latent_dim": 2') in text
    assert html.escape("</pre><script>alert(1)</script>") in text
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_report_from_plot_run(tmp_path, digits_like):
    x, y = digits_like
    images = plots.plot_run(FakeVAE(), x, y, tmp_path, n_samples=16,
                            metrics_csv=write_metrics(tmp_path / "metrics.csv"))
    text = write_report(tmp_path, title="digits", figures={"test ELBO": -30.0},
                        images=images).read_text()
    for name in images:
        assert f'src="{name}.png"' in text
    assert "<figcaption>" in text and "Configuration" not in text
