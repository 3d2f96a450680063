"""Study (issue 7): the class prior p(z|y) refit, after training, to each class's aggregate
posterior; conditional accuracy and test -log p(x|y) before and after, on the same weights.

For a fixed encoder, the Gaussian p(z|y) that maximises the ELBO's prior term
E_{x~class y} E_q(z|x,y)[log p(z|y)] has the moments of the class's aggregate posterior: mean
E[mu(x)], covariance Cov[mu(x)] + E[diag sigma^2(x)]. The trained prior is N(mu_y, I); the
refit is either diagonal or full-covariance. Not in the package yet: this only measures.

    .venv/bin/python benchmarks/study_cvae_prior_refit.py             # trains (about 30 min)
    .venv/bin/python benchmarks/study_cvae_prior_refit.py --weights cvae.pt --save-weights ...

The model: bench_cvae's "cvae-class" arm, latent 16, IWAE K=5, 300 epochs (patience 30), seed 0,
the MNIST test-set split of bench_cvae; the judge: bench_cvae's MLP (256) on the real training
split; 1,000 samples per class, two sampling seeds; -log p(x|y) with K=1000.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.distributions import MultivariateNormal

import bench_cvae
from vaekit.config import DataConfig
from vaekit.data import prepare


def report(tag: str, model, judge, splits) -> None:
    asked = torch.arange(10).repeat_interleave(1000)
    x_test = torch.bernoulli(splits.test.x, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        accs = []
        for seed in (0, 1):
            x = model.sample(len(asked), y=asked, generator=torch.Generator().manual_seed(seed))
            accs.append(float((judge.predict(x.flatten(1).numpy()) == asked.numpy()).mean()))
        torch.manual_seed(1)
        nll = float(-model.log_likelihood(x_test, splits.test.y, k=1000).mean())
    print(f"| {tag} | {accs[0]:.4f} / {accs[1]:.4f} | {nll:.2f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, help="a trained state dict (skip training)")
    p.add_argument("--save-weights", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the judge's convergence warnings
    from sklearn.neural_network import MLPClassifier

    splits = prepare(DataConfig(source=str(bench_cvae.MNIST), val_fraction=0.1,
                                test_fraction=0.2, binarize="dynamic"))
    model = bench_cvae.build("cvae-class", splits, 16, 0)
    if a.weights:
        model.load_state_dict(torch.load(a.weights, weights_only=True))
    else:
        bench_cvae.train(model, splits, 300, 0, 30, "iwae", 5)
        if a.save_weights:
            torch.save(model.state_dict(), a.save_weights)
    model.eval()
    judge = MLPClassifier(hidden_layer_sizes=(256,), max_iter=200, random_state=0)
    judge.fit(splits.train.x.flatten(1).numpy(), splits.train.y.numpy())
    real = judge.score(splits.test.x.flatten(1).numpy(), splits.test.y.numpy())
    print(f"judge on real test digits: {real:.4f}\n")
    print("| prior p(z|y) | conditional accuracy (seeds 0 / 1) | test -log p(x|y), nats |")
    print("|---|---|---|")
    report("trained: N(mu_y, I)", model, judge, splits)

    with torch.no_grad():
        q = model.posterior(splits.train.x, splits.train.y)
    mu, var, y = q.mean.double().numpy(), q.logvar.exp().double().numpy(), splits.train.y.numpy()
    means = np.stack([mu[y == c].mean(0) for c in range(10)])
    model.prior.set_mixture(means, np.stack([mu[y == c].var(0) + var[y == c].mean(0)
                                             for c in range(10)]))
    report("refit, diagonal", model, judge, splits)

    cov = np.stack([np.cov(mu[y == c].T) + np.diag(var[y == c].mean(0)) for c in range(10)])
    full = MultivariateNormal(torch.from_numpy(means).float(),
                              covariance_matrix=torch.from_numpy(cov).float())

    def log_prob(z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        comp = full.log_prob(z.unsqueeze(-2))  # (..., classes)
        return comp.gather(-1, y.expand(comp.shape[:-1]).unsqueeze(-1)).squeeze(-1)

    def sample(n: int, y: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        eps = torch.randn(n, means.shape[1], generator=generator)
        return full.loc[y] + (full.scale_tril[y] @ eps.unsqueeze(-1)).squeeze(-1)

    model.prior.log_prob, model.prior.sample = log_prob, sample  # what sample/IWAE call
    report("refit, full covariance", model, judge, splits)


if __name__ == "__main__":
    main()
