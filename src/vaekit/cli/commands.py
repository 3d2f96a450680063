"""The core commands of `vaekit`: train, evaluate, sample, reconstruct, encode, plot (their
parsers are built in `vaekit.cli`). Each takes the parsed arguments and calls the Python API;
every user mistake is a `UserError` (or a ValueError from the API), which `vaekit.cli.main`
prints as one line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vaekit.cli.common import UserError, check_out, plots, write_atomic, write_images

# --- commands ----------------------------------------------------------------------------------

TRAIN_FLAGS = {  # flag -> (config section, field)
    "data": ("data", "source"),
    "binarize": ("data", "binarize"),
    "standardize": ("data", "standardize"),
    "label_column": ("data", "label_column"),
    "image_shape": ("data", "image_shape"),
    "val_fraction": ("data", "val_fraction"),
    "test_fraction": ("data", "test_fraction"),
    "split_seed": ("data", "split_seed"),
    "mmap": ("data", "mmap"),
    "latent_dim": ("model", "latent_dim"),
    "arch": ("model", "arch"),
    "hidden": ("model", "hidden"),
    "conv_channels": ("model", "conv_channels"),
    "activation": ("model", "activation"),
    "likelihood": ("model", "likelihood"),
    "sigma": ("model", "sigma"),
    "learned_sigma": ("model", "learned_sigma"),
    "prior": ("model", "prior"),
    "components": ("model", "mixture_components"),
    "conditional": ("model", "conditional"),
    "conditional_prior": ("model", "prior"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"),
    "seed": ("train", "seed"),
    "grad_clip": ("train", "grad_clip"),
    "patience": ("train", "patience"),
    "objective": ("train", "objective"),
    "samples": ("train", "samples"),
    "beta": ("train", "beta"),
    "warmup_epochs": ("train", "warmup_epochs"),
    "mi_estimator": ("train", "mi_estimator"),
    "mi_weight": ("train", "mi_weight"),
    "critic_noise": ("model", "critic_noise"),
    "augment": ("model", "augment"),
    "precision": ("train", "precision"),
    "compile": ("train", "compile"),
    "k": ("train", "eval_k"),
}


def run_config_from_args(args: argparse.Namespace) -> Any:
    """Defaults, then --config, then explicit flags; validated by the dataclasses."""
    from vaekit.config import RunConfig, from_dict, load_run_config, to_dict

    base = RunConfig()
    if args.config:
        base = load_run_config(args.config, strict=False)
    elif args.resume and (args.out / "config.json").is_file():
        base = load_run_config(args.out / "config.json")  # keep its epochs unless --epochs
    merged = to_dict(base)
    for flag, (section, name) in TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            merged[section][name] = list(value) if isinstance(value, tuple) else value
    if args.mc_kl:
        merged["train"]["analytic_kl"] = False
    if args.objective is not None:  # infomax trains an encoder-only model, the rest a VAE
        merged["model"]["decoder"] = args.objective != "infomax"
    return from_dict(RunConfig, merged, strict=True)


def cmd_train(args: argparse.Namespace) -> int:
    from vaekit import distributed
    from vaekit.devices import describe
    from vaekit.runs import train_run

    config = run_config_from_args(args)
    run, figures = train_run(
        config,
        args.out,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
        pictures=not args.no_pictures,
        device=args.device,
    )
    if distributed.launched_rank() != 0:  # under torchrun, rank 0 reports
        return 0
    print(_figures_text(figures))
    print(f"device: {describe(run.device)}")
    report = run.path / "report.html"
    print(f"run directory: {run.path}" + (f"\nreport: {report}" if report.exists() else ""))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaekit.evaluate import conditional_accuracy, evaluate
    from vaekit.runs import Run

    run = Run.load(args.run, device=args.device)
    x, y = run.data(args.data, args.split)
    y = labels_for(run, y)
    train = run.config.train
    figures = evaluate(
        run.model,
        x,
        y,
        k=args.k,
        seed=args.seed,
        precision=args.precision,
        mi_estimator=train.mi_estimator,
        mi_weight=train.mi_weight,
    )
    figures = {"split": args.data or args.split, **figures}
    if y is not None:
        train = run.data(None, "train")
        figures.update(conditional_accuracy(run.model, *train, x, y, seed=args.seed))
    print(json.dumps(figures) if args.json else _figures_text(figures))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from vaekit.runs import Run

    check_out(args.out, (".png", ".npz"), args.force)
    run = Run.load(args.run, device=args.device)
    y = sample_labels(run, args.label, args.n)
    x = run.model.sample(args.n, y=y, generator=torch.Generator().manual_seed(args.seed))
    x = run.to_display(x.cpu())
    if args.out.suffix == ".npz":
        arrays = {"x": x.numpy()} if y is None else {"x": x.numpy(), "y": y.numpy()}
        write_atomic(args.out, lambda f: np.savez(f, **arrays))
    else:
        per_row = None if y is None or args.label is not None else run.config.model.num_classes
        write_images(
            run, x, args.out, lambda imgs, path: plots().image_grid(imgs, path, nrow=per_row)
        )
    print(f"wrote {args.out}")
    return 0


def sample_labels(run: Any, label: str | None, n: int) -> Any:
    """The labels to sample with: --label (an index or a class name) n times; every class in
    turn for a conditional run without --label; None for a run that is not conditional."""
    import torch

    cfg = run.config.model
    if not cfg.conditional:
        if label is not None:
            raise UserError(
                f"{run.path} is not a conditional model, so --label has no meaning; train one "
                "with 'vaekit train --conditional' or drop --label"
            )
        return None
    if label is None:
        return torch.arange(n) % cfg.num_classes
    return torch.full((n,), class_index(label, cfg.num_classes, cfg.class_names))


def class_index(label: str, classes: int, names: tuple[str, ...]) -> int:
    """A --label value as a class index: a class name of the run, or an integer 0..K-1."""
    if label in names:
        return names.index(label)
    try:
        index = int(label)
    except ValueError:
        known = f"; its classes are {', '.join(names)}" if names else ""
        raise UserError(f"--label {label!r} is not a class of this run{known}") from None
    if not 0 <= index < classes:
        named = f" ({', '.join(names)})" if names else ""
        raise UserError(
            f"--label {index} is out of range: this run has classes 0..{classes - 1}{named}"
        )
    return index


def labels_for(run: Any, y: Any) -> Any:
    """The data's labels where the run's model is conditional (an error if the data have
    none), None where it is not."""
    if not run.config.model.conditional:
        return None
    if y is None:
        raise UserError(
            "this run's model is conditional and the data have no labels; give labelled data "
            "(as for training: IDX labels, .npz y, the CSV's label column, class sub-folders)"
        )
    return y


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from vaekit.runs import Run

    check_out(args.out, (".png",), args.force)
    run = Run.load(args.run, device=args.device)
    x, y = run.data(args.data)
    y = labels_for(run, y)
    x, y = x[: args.n], None if y is None else y[: args.n]
    x_hat = run.model.reconstruct(x.to(run.device), y).cpu()
    pair = run.to_display(x), run.to_display(x_hat)
    images = [plots().as_images(t.numpy(), run.config.model.event_shape) for t in pair]
    if images[0] is None:
        raise UserError("this run's data are not images; use 'vaekit encode' or the Python API")
    write_atomic(args.out, lambda f: plots().reconstruction_grid(images[0], images[1], f, n=args.n))
    print(f"wrote {args.out}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.runs import Run

    check_out(args.out, (".npz", ".csv"), args.force)
    run = Run.load(args.run, device=args.device)
    x, y = run.data(args.data)
    mean, logvar = run.model.encode(x.to(run.device), labels_for(run, y))
    mean_np, logvar_np = mean.cpu().numpy(), logvar.cpu().numpy()
    if args.out.suffix == ".npz":
        arrays = {"mean": mean_np, "logvar": logvar_np}
        if y is not None:
            arrays["y"] = y.numpy()
        write_atomic(args.out, lambda f: np.savez(f, **arrays))
    else:
        d = mean_np.shape[1]
        header = [f"mean_{i}" for i in range(d)] + [f"logvar_{i}" for i in range(d)]
        rows = [[f"{v:.6g}" for v in r] for r in np.concatenate([mean_np, logvar_np], axis=1)]
        if y is not None:  # the class names where the run has them, else the indices
            names = run.config.model.class_names
            header.append("label")
            for r, label in zip(rows, y.tolist(), strict=True):
                r.append(names[label] if names and 0 <= label < len(names) else str(label))
        text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
        write_atomic(args.out, lambda f: Path(f).write_text(text))
    print(f"wrote {args.out}: {len(mean_np)} examples x {mean_np.shape[1]} latent dimensions")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from vaekit.cli.cluster import ESTIMATOR
    from vaekit.devices import resolve_device
    from vaekit.runs import Run, draw

    resolve_device(args.device)  # a device that is not here: one line, before any work
    if (args.run / ESTIMATOR).is_file():  # a `vaekit cluster` run: its own pictures
        from vaekit.cluster_plots import draw_clusters

        if args.data is not None:
            raise UserError("--data scores anomalies against a VAE run, not a cluster run")
        for path in draw_clusters(args.run).values():
            print(f"wrote {path}")
        return 0
    run = Run.load(args.run, device=args.device)
    extra = {}
    if args.data is not None:
        from vaekit.anomaly_plots import draw_anomaly

        x, _ = run.data(args.data)
        extra = draw_anomaly(
            run,
            x,
            run.path,
            score=args.score,
            contamination=args.contamination,
            threshold=args.threshold,
        )
    elif args.contamination is not None or args.threshold is not None:
        raise UserError("--contamination and --threshold go with --data (the data to score)")
    images = draw(run, extra=extra)
    for path in images.values():
        print(f"wrote {path}")
    print(f"wrote {run.path / 'report.html'}")
    return 0


# --- helpers ----------------------------------------------------------------------------------


def _figures_text(f: dict[str, Any]) -> str:
    split = f.get("split", "test")
    if "elbo" not in f:  # an encoder-only model: its figures as named
        rows = [f"{split} split, {f['n']} examples (an encoder-only model):"]
        for key, value in f.items():
            if key not in ("split", "n"):
                shown = f"{value:10.4f}" if isinstance(value, float) else str(value)
                rows.append(f"  {key:<43}{shown}")
        return "\n".join(rows)
    given = "|y" if f.get("conditional") else ""
    lines = [
        f"{split} split, {f['n']} examples, nats per example"
        + (" (networks in bf16)" if f.get("precision") == "bf16" else "")
        + ":",
        f"  ELBO (log-probability, higher is better)   {f['elbo']:10.3f}",
        f"  rate, KL(q(z|x) || p(z))                   {f['rate']:10.3f}",
        f"  distortion, -E_q log p(x|z)                {f['distortion']:10.3f}",
        f"  log p(x{given}), importance sampling, K={f['k']:<{9 - len(given)}d}"
        f"{f['log_likelihood']:10.3f}",
        f"  bits per dimension                         {f['bits_per_dim']:10.4f}",
    ]
    if "conditional_accuracy" in f:
        lines += [
            f"  conditional accuracy ({f['samples_per_class']} samples per class) "
            f"{f['conditional_accuracy']:10.3f}",
            f"  (its judge's accuracy on real test data      {f['classifier_test_accuracy']:.3f})",
        ]
    return "\n".join(lines)
