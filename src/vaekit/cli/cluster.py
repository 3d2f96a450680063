"""`vaekit cluster`: one-step clustering with a Gaussian-mixture VAE (vaekit.cluster)."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

from vaekit.cli.common import (
    UserError,
    add_device,
    check_out,
    hidden_sizes,
    ints,
    write_atomic,
)
from vaekit.cluster.rundir import ESTIMATOR, SOURCE, load_run

NAME = "cluster"

EPILOG = """examples:
  vaekit cluster --data digits --k 10 --out runs/digits-clusters
  vaekit cluster --data ../shared/data/mnist --k 10 --arch mlp --out runs/mnist-clusters
  vaekit cluster --data digits --k 10 --objective infomax --out runs/digits-enc   # no decoder
  vaekit cluster runs/mnist-clusters --data new_images/ --out assigned.csv
  vaekit plot runs/mnist-clusters      # samples per cluster, latent scatter by cluster

A run directory gets:
  clusterer.safetensors  the fitted model (weights; parameters as JSON in the header)
  cluster.json           where the data came from (to assign or plot again)
  clusters.csv           index (0-based row of --data), cluster, probability (q(y|x) of it)
  metrics.json           only where --data has labels: hungarian_accuracy (clusters matched
                         one-to-one to classes), nmi, ari; the labels are used for nothing else"""

CLUSTERS = "clusters.csv"
METRICS = "metrics.json"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="cluster data with a Gaussian-mixture VAE, or assign new data to a run's clusters",
        description="Train a clustering VAE (VaDE) into a run directory, or with RUN given, "
        "assign --data to the clusters of that run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", nargs="?", type=Path, help="a cluster run directory: assign --data")
    p.add_argument("--data", required=True, help="'digits' (built in) or a path vaekit reads")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="run directory to create (training) or FILE.csv (with RUN)",
    )
    p.add_argument("--k", type=int, default=10, help="number of clusters, >= 2 [10]")
    p.add_argument("--image-shape", type=ints, help="read flat rows as (H, W) or (C, H, W)")
    p.add_argument("--label-column", help="CSV column / array name holding labels (scoring only)")
    g = p.add_argument_group("model and recipe (training only)")
    g.add_argument("--latent-dim", type=int, default=10, help="[10]")
    g.add_argument(
        "--arch",
        choices=["auto", "mlp", "conv"],
        default="auto",
        help="auto: conv for images >= 16x16, else mlp [auto]",
    )
    g.add_argument("--hidden", type=hidden_sizes, default=(512, 256), help="MLP sizes [512,256]")
    g.add_argument(
        "--pretrain-epochs", type=int, help="autoencoder epochs [at least 50 and 2000 steps]"
    )
    g.add_argument(
        "--pull-epochs",
        type=int,
        help="epochs with the initial clusters observed [at least 20 and 1600 steps]",
    )
    g.add_argument("--epochs", type=int, help="joint (VaDE) epochs [at least 10 and 80 steps]")
    g.add_argument("--n-init", type=int, default=10, help="restarts of the initial mixture [10]")
    g.add_argument(
        "--init",
        choices=["tsne", "gmm"],
        default="tsne",
        help="initial clustering: t-SNE then a GMM, or a GMM alone [tsne]",
    )
    g.add_argument(
        "--init-space",
        choices=["auto", "pooled", "input", "codes"],
        default="auto",
        help="what the initial clustering sees: auto = the inputs up to 256 features, else "
        "pooled (the restarts on the autoencoder's codes and on the inputs) [auto]",
    )
    g.add_argument(
        "--objective",
        choices=["elbo", "infomax"],
        default="elbo",
        help="elbo: the clustering VAE; infomax: the same stages encoder-only (no decoder: "
        "clusters and features, no samples) [elbo]",
    )
    g.add_argument("--seed", type=int, default=0, help="[0]")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device(p, "where the three training stages run; assigning runs on the CPU")


def run(args: argparse.Namespace) -> int:
    from vaekit.train.devices import resolve_device

    resolve_device(args.device)  # a device that is not here: one line, before any work
    if args.run is not None:
        return _assign(args)
    return _train(args)


def _load(source: str, image_shape: Any, label_column: str | None) -> Any:
    from vaekit.data import load_source

    return load_source(source, image_shape=image_shape, label_column=label_column)


def _train(args: argparse.Namespace) -> int:
    from vaekit.cluster.estimator import clustering_scores
    from vaekit.train import distributed
    from vaekit.train.devices import resolve_device

    out: Path = args.out
    if out.suffix:
        raise UserError(f"--out must be a run directory (no suffix) when training, got {out}")
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or args.force)):
        raise UserError(
            f"{out} exists; pass --force to overwrite its files or choose another --out"
        )
    for name in ("pretrain_epochs", "pull_epochs", "epochs"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0")
    ds = _load(args.data, args.image_shape, args.label_column)
    # under torchrun the three training stages run on every rank (distributed.py); rank 0 writes
    device = resolve_device(distributed.local_device(args.device))
    started = distributed.start(device)
    try:
        est = _fit(args, ds.x, str(device))
    finally:
        distributed.stop(started)
    if distributed.launched_rank() != 0:
        return 0
    proba = est.predict_proba(ds.x)

    out.mkdir(parents=True, exist_ok=True)
    est.save(out / ESTIMATOR)  # atomic: a temp file, then a rename
    source = {
        "data": args.data,
        "image_shape": list(args.image_shape) if args.image_shape else None,
        "label_column": args.label_column,
    }
    write_atomic(out / SOURCE, lambda f: f.write_text(json.dumps(source, indent=2) + "\n"))
    write_atomic(out / CLUSTERS, lambda f: f.write_text(_table(proba)))
    sizes = ", ".join(str(int((est.labels_ == c).sum())) for c in range(args.k))
    print(f"wrote {out / CLUSTERS}: {len(proba)} inputs in {args.k} clusters (sizes {sizes})")
    if ds.y is not None:
        scores = clustering_scores(ds.y, est.labels_)
        metrics = {**scores, "n": len(ds.y), "k": args.k, "classes": len(set(ds.y.tolist()))}
        text = json.dumps(metrics, indent=2) + "\n"
        write_atomic(out / METRICS, lambda f: f.write_text(text))
        print(
            f"wrote {out / METRICS}: hungarian accuracy {scores['hungarian_accuracy']:.4f}, "
            f"NMI {scores['nmi']:.4f}, ARI {scores['ari']:.4f} (labels used only to score)"
        )
    return 0


def _fit(args: argparse.Namespace, x: Any, device: str) -> Any:
    """The VAEClusterer the flags describe, fitted on x (every user mistake is raised here,
    before anything is written)."""
    from vaekit.cluster.estimator import VAEClusterer
    from vaekit.train import distributed

    est = VAEClusterer(
        args.k,
        latent_dim=args.latent_dim,
        hidden=tuple(args.hidden),
        arch=args.arch,
        pretrain_epochs=args.pretrain_epochs,
        pull_epochs=args.pull_epochs,
        epochs=args.epochs,
        n_init=args.n_init,
        init=args.init,
        init_space=args.init_space,
        objective=args.objective,
        random_state=args.seed,
        verbose=not args.quiet and distributed.launched_rank() == 0,
        device=device,
    )
    return est.fit(x)


def _assign(args: argparse.Namespace) -> int:
    check_out(args.out, (".csv",), args.force)
    est, source = load_run(args.run)
    shape = args.image_shape or source.get("image_shape")
    ds = _load(args.data, shape, args.label_column)
    proba = est.predict_proba(ds.x)  # wrong shapes and values are refused here
    write_atomic(args.out, lambda f: f.write_text(_table(proba)))
    print(f"wrote {args.out}: {len(proba)} inputs assigned to {proba.shape[1]} clusters")
    return 0


def _table(proba: Any) -> str:
    """CSV rows: index, cluster (argmax q(y|x)), probability (its q(y|x))."""
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(["index", "cluster", "probability"])
    for i, row in enumerate(proba):
        c = int(row.argmax())
        w.writerow([i, c, f"{row[c]:.6g}"])
    return text.getvalue()
