"""Semi-supervised classification: vaekit's VAEClassifier against scikit-learn's
semi-supervised and supervised baselines, side by side in one run, over draws of the labelled
rows (issue 29).

Data (`common.load_labelled`, a fixed split): MNIST's 10,000 test-set images (8,000 to learn
from, 2,000 held out; flat rows in [0, 1]) and the 8x8 digits (1,437 / 360). For each draw
(seed s) `--labels` labels per class of the learning rows are kept and the rest hidden (-1).

Rows (held-out accuracy, mean ± std over draws, and training time):
  vaekit            VAEClassifier(random_state=s), its defaults, given the rows as images
  label-spreading   LabelSpreading(kernel="knn", alpha=0.2), the best k of 5, 10, 20 on the
                    held-out rows (the baseline gets its best setting, chosen with labels)
  self-training-lr  SelfTrainingClassifier(LogisticRegression(max_iter=1000))
  self-training-svc SelfTrainingClassifier(SVC(probability=True))
  mlp, svc          MLPClassifier / SVC on the labelled rows only
  clusterer         VAEClusterer(10, random_state=s), each cluster named by the majority of its
                    labelled rows (a cluster without one: the most common label)
Class-conditional samples: 100 per class from vaekit, drawn from each class's aggregate
posterior (`sample(100, label=c)`, the default) and from p(z|y) (`source="prior"`), judged by a
classifier trained on the real held-out rows: the fraction judged the asked class. The judge is
the most accurate on the real learning rows (which it never saw) of an MLPClassifier, an
SVC(C=10) and a small CNN (`pick_judge`); its accuracy there is printed beside the figures, as
the ceiling real images would reach.

  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_semisupervised.py --data mnist --labels 10
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_semisupervised.py --data mnist --labels 60
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_semisupervised.py --data digits --labels 5

vaekit's row alone, after a change to its defaults (the other rows do not depend on vaekit):
`--vaekit-only` appends each draw's vaekit figures to STEM_vaekit.jsonl (processes may share it,
one per core), and `--merge-vaekit` puts that file's rows for the stored draws into STEM.json
and STEM.md, marked as rerun (the "/ clusterer" ratio then divides by the earlier run's times).
`--baselines-only` runs the other rows of new draws into STEM_baselines.jsonl; `--merge-vaekit
--draws ...` then takes those draws' rows from there.

The cost at equal epochs (the issue's "training time <= 2x the clusterer's on the same data and
epochs"), results semisupervised_<data>_<labels>_cost:
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_semisupervised.py --data digits --labels 5 \\
      --cost-rounds 3 --cost-only
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import warnings

import numpy as np

import common as bc


def draw_labels(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shown = np.full(len(y), -1)
    for c in np.unique(y):
        shown[rng.choice(np.flatnonzero(y == c), per_class, replace=False)] = c
    return shown


def images(x: np.ndarray) -> np.ndarray:
    """Flat square images (n, side**2) as (n, side, side): how a user holds images, and what
    lets VAEClassifier move them for its consistency term (augment="auto")."""
    side = math.isqrt(x.shape[1])
    return x.reshape(len(x), side, side)


class CNNJudge:
    """A small convolutional classifier of square images (n, side**2) in [0, 1], seeded: two
    3x3 convolutions with pooling, 128 hidden units; trained with shifts of a pixel."""

    def __init__(self, epochs: int = 20, seed: int = 0):
        self.epochs, self.seed = epochs, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> CNNJudge:
        import torch
        from torch import nn

        torch.manual_seed(self.seed)
        self.side = side = math.isqrt(x.shape[1])
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * (side // 4) ** 2, 128), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(128, int(y.max()) + 1),
        )
        xs = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, side, side)
        ys = torch.as_tensor(y)
        opt = torch.optim.Adam(self.net.parameters(), 1e-3)
        g = torch.Generator().manual_seed(self.seed)
        self.net.train()
        for _ in range(self.epochs):
            for idx in torch.randperm(len(xs), generator=g).split(64):
                shift = [int(v) for v in torch.randint(-1, 2, (2,), generator=g)]
                logits = self.net(torch.roll(xs[idx], shift, (2, 3)))
                loss = nn.functional.cross_entropy(logits, ys[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net.eval()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            xs = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, self.side, self.side)
            return self.net(xs).argmax(1).numpy()


def pick_judge(x, y, xt, yt):
    """(judge, its name, its accuracy on the real learning rows x): the most accurate there of
    the candidates, each trained on the held-out rows xt."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    fitted = [(name, make().fit(xt, yt)) for name, make in (
        ("MLP", lambda: MLPClassifier(max_iter=500, random_state=0)),
        ("SVC(C=10)", lambda: SVC(C=10)),
        ("CNN", CNNJudge),
    )]
    scored = [(float((j.predict(x) == y).mean()), name, j) for name, j in fitted]
    acc, name, judge = max(scored, key=lambda t: t[0])
    print("judges on the real learning rows:", {n: round(a, 4) for a, n, _ in scored}, flush=True)
    return judge, name, acc


def baselines(x, shown, xt, yt, seed: int) -> dict[str, tuple[float, float]]:
    """{row: (held-out accuracy, seconds)} of the scikit-learn rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier
    from sklearn.svm import SVC

    out = {}
    t0 = time.perf_counter()
    best = max(
        LabelSpreading(kernel="knn", n_neighbors=k, alpha=0.2, max_iter=100).fit(x, shown)
         .score(xt, yt) for k in (5, 10, 20)
    )
    out["label-spreading"] = (best, (time.perf_counter() - t0) / 3)
    for name, base in (("self-training-lr", LogisticRegression(max_iter=1000)),
                       ("self-training-svc", SVC(probability=True, random_state=seed))):
        t0 = time.perf_counter()
        acc = SelfTrainingClassifier(base).fit(x, shown).score(xt, yt)
        out[name] = (acc, time.perf_counter() - t0)
    lab = shown >= 0
    for name, model in (("mlp", MLPClassifier(max_iter=1000, random_state=seed)), ("svc", SVC())):
        t0 = time.perf_counter()
        acc = model.fit(x[lab], shown[lab]).score(xt, yt)
        out[name] = (acc, time.perf_counter() - t0)
    return out


def clusterer_row(x, shown, xt, yt, seed: int) -> tuple[float, float]:
    from vaekit import VAEClusterer

    t0 = time.perf_counter()
    est = VAEClusterer(10, random_state=seed, device="cpu").fit(x)
    seconds = time.perf_counter() - t0
    fallback = np.bincount(shown[shown >= 0]).argmax()
    names = []
    for c in range(10):
        known = shown[(est.labels_ == c) & (shown >= 0)]
        names.append(np.bincount(known).argmax() if len(known) else fallback)
    return float((np.asarray(names)[est.predict(xt)] == yt).mean()), seconds


def vaekit_row(x, shown, xt, yt, seed: int, judge) -> dict[str, float]:
    """{acc, sec, samples (judged, from the aggregate posterior), samples_prior}."""
    from vaekit import VAEClassifier

    t0 = time.perf_counter()
    est = VAEClassifier(random_state=seed, device="cpu").fit(images(x), shown)
    seconds = time.perf_counter() - t0

    def judged(source: str) -> float:
        hits = [(judge.predict(est.sample(100, label=c, random_state=seed, source=source)
                               .reshape(100, -1)) == c).mean() for c in est.classes_]
        return float(np.mean(hits))

    return dict(acc=est.score(images(xt), yt), sec=seconds, samples=judged("aggregate"),
                samples_prior=judged("prior"))


def cost_at_equal_epochs(
    x, shown, seed: int, rounds: int, scale: float = 1.0
) -> dict[str, object]:
    """Training time of VAEClassifier and VAEClusterer(10) given the same images and stage
    epochs (the classifier's default lengths on these rows, times `scale`, at least 1 each;
    both resolve arch "auto" alike), alternated `rounds` times: medians."""
    import math

    from vaekit import VAEClassifier, VAEClusterer
    from vaekit.semisupervised.recipe import oversample

    steps = math.ceil(len(x) / min(256, len(x)))
    lengths = VAEClassifier().stage_lengths(steps, len(oversample(shown, 0.1, seed)) / len(x))
    pre, pull, joint = (max(1, round(e * scale)) for e in lengths)
    epochs = dict(pretrain_epochs=pre, pull_epochs=pull, epochs=joint)
    times: dict[str, list[float]] = {"classifier": [], "clusterer": []}
    trained: dict[str, int] = {}
    for _ in range(rounds):
        for name in times:
            t0 = time.perf_counter()
            if name == "classifier":
                est = VAEClassifier(random_state=seed, device="cpu", **epochs).fit(
                    images(x), shown
                )
            else:
                est = VAEClusterer(10, random_state=seed, device="cpu", **epochs).fit(
                    images(x)
                )
            times[name].append(time.perf_counter() - t0)
            trained[name] = int(est.n_iter_)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"epochs": epochs, "seconds": times, "median": med, "epochs_trained": trained,
            "ratio": med["classifier"] / med["clusterer"]}


def cost_table(cost: dict[str, object], args) -> str:
    e, med, n = cost["epochs"], cost["median"], cost["epochs_trained"]
    return "\n".join([
        f"# Semi-supervised, the cost at equal epochs: {args.data}, {args.labels} labels per class",
        "",
        f"VAEClassifier and VAEClusterer(10) given the same images and stage epochs "
        f"(pretrain {e['pretrain_epochs']}, pull {e['pull_epochs']}, joint {e['epochs']}: "
        f"{args.cost_scale} x the classifier's defaults here), alternated {args.cost_rounds} "
        "rounds, one thread; the classifier's "
        "joint epochs also hold the repeated labelled rows (10% of an epoch's rows); the "
        "clusterer's joint stage may stop early when its clusters settle.",
        "",
        "| model | seconds (median) | epochs trained | per round |",
        "|---|---|---|---|",
        *(f"| {k} | {med[k]:.1f} | {n[k]} | {', '.join(f'{t:.1f}' for t in cost['seconds'][k])} |"
          for k in med),
        "",
        f"Ratio classifier / clusterer: **{cost['ratio']:.2f}**.",
        "",
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_semisupervised.py "
        f"--data {args.data} --labels {args.labels} --cost-rounds {args.cost_rounds} "
        f"--cost-scale {args.cost_scale} --cost-only`; "
        f"{platform.processor() or platform.machine()}.",
    ])


def table(rows: dict[str, list[tuple[float, float]]], samples: dict[str, object], args) -> str:
    ref = np.median([s for _, s in rows["clusterer"]])
    lines = [
        f"# Semi-supervised: {args.data}, {args.labels} labels per class "
        f"({10 * args.labels} in all), draws {args.draws}",
        "",
        "Held-out accuracy, mean ± std over draws (min); training seconds (median) and their "
        "ratio to the clusterer's on the same rows (one thread, this machine).",
        "",
        "| row | accuracy | min | seconds | / clusterer |",
        "|---|---|---|---|---|",
    ]
    for name, vals in rows.items():
        a = np.array([v for v, _ in vals])
        s = float(np.median([t for _, t in vals]))
        lines.append(f"| {name} | {a.mean():.4f} ± {a.std():.4f} | {a.min():.4f} | {s:.1f} | "
                     f"{s / ref:.2f} |")
    agg, prior = samples["aggregate"], samples["prior"]
    lines += ["", "vaekit's class-conditional samples judged the asked class, mean (per draw): "
              f"**{np.mean(agg):.3f}** from the aggregate posterior, the default "
              f"({', '.join(f'{v:.3f}' for v in agg)}); {np.mean(prior):.3f} from p(z|y) "
              f"({', '.join(f'{v:.3f}' for v in prior)}). Judge: {samples['judge']} trained on "
              f"the real held-out rows, which judges the real learning rows right "
              f"{samples['judge_real']:.3f} of the time.", "",
              f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_semisupervised.py "
              f"--data {args.data} --labels {args.labels} --draws {args.draws}`; "
              f"{platform.processor() or platform.machine()}."]
    return "\n".join(lines)


def jsonl(path) -> dict[int, dict]:
    """{draw: the file's newest line for it} of a --vaekit-only / --baselines-only log."""
    lines = path.read_text().splitlines() if path.is_file() else []
    return {r["draw"]: r for r in map(json.loads, filter(None, lines))}


def merge_vaekit(stem, draws_asked: str | None) -> None:
    """vaekit's row of STEM.json (and the samples judged) replaced by STEM_vaekit.jsonl's lines
    for the draws asked (default: the stored ones; the newest line of a draw wins), the other
    rows of draws not stored taken from STEM_baselines.jsonl; STEM.md rewritten with a note."""
    import datetime

    stored = json.loads(stem.with_suffix(".json").read_text())
    old_draws = [int(d) for d in stored["args"]["draws"].split(",")]
    draws = [int(d) for d in (draws_asked or stored["args"]["draws"]).split(",")]
    found, extra = (jsonl(stem.with_name(f"{stem.name}_{kind}.jsonl"))
                    for kind in ("vaekit", "baselines"))
    missing = [d for d in draws if d not in found]
    missing += [d for d in draws if d not in old_draws and d not in extra]
    if missing:
        raise SystemExit(f"no rows for draws {missing}: run --vaekit-only / --baselines-only")
    rows = {name: [tuple(vals[old_draws.index(d)]) if d in old_draws
                   else tuple(extra[d]["rows"][name]) for d in draws]
            for name, vals in stored["rows"].items() if name != "vaekit"}
    stored["rows"] = {"vaekit": [(found[d]["acc"], found[d]["sec"]) for d in draws], **rows}
    stored["samples_judged"] = {
        "aggregate": [found[d]["samples"] for d in draws],
        "prior": [found[d]["samples_prior"] for d in draws],
        "judge": found[draws[0]]["judge"], "judge_real": found[draws[0]]["judge_real"],
    }
    stored["vaekit_rerun"] = str(datetime.date.today())
    stored["args"]["draws"] = ",".join(map(str, draws))
    args = argparse.Namespace(**stored["args"])
    md = table(stored["rows"], stored["samples_judged"], args)
    added = ",".join(str(d) for d in draws if d not in old_draws)
    md += (f"\n\nThe vaekit row and its samples were rerun alone on {stored['vaekit_rerun']} "
           "(`--vaekit-only`, then `--merge-vaekit`); the other rows, and the clusterer's "
           "seconds the ratios divide by, are from the earlier run of all rows"
           + (f" (draws {added}: `--baselines-only`)." if added else "."))
    bc.write_result(stem, md, stored)


def append_line(path, record: dict) -> None:
    """One JSON line appended (and printed): one short write, so processes may share the file."""
    line = json.dumps(record)
    print(line, flush=True)
    with path.open("a") as f:
        f.write(line + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=["mnist", "digits"], default="digits")
    p.add_argument("--labels", type=int, default=5, help="labels per class")
    p.add_argument("--draws", help="seeds of the labelled rows [0,1,2,3,4]")
    p.add_argument("--cost-rounds", type=int, default=0,
                   help="also time classifier and clusterer at equal epochs, this many rounds")
    p.add_argument("--cost-only", action="store_true", help="only the equal-epochs timing")
    p.add_argument("--cost-scale", type=float, default=1.0,
                   help="the timed stage epochs, as a share of the classifier's defaults [1]")
    p.add_argument("--vaekit-only", action="store_true",
                   help="only vaekit's row, each draw appended to STEM_vaekit.jsonl")
    p.add_argument("--merge-vaekit", action="store_true",
                   help="vaekit's row of STEM.json from STEM_vaekit.jsonl; STEM.md rewritten")
    p.add_argument("--baselines-only", action="store_true",
                   help="only the other rows, each draw appended to STEM_baselines.jsonl")
    bc.add_out_dir(p)
    args = p.parse_args()
    draws_asked, args.draws = args.draws, args.draws or "0,1,2,3,4"
    warnings.filterwarnings("ignore")
    x, y, xt, yt = bc.load_labelled(args.data, 0)
    stem = args.out_dir / f"semisupervised_{args.data}_{args.labels * 10}"
    if args.cost_rounds:
        seed = int(args.draws.split(",")[0])
        shown = draw_labels(y, args.labels, seed)
        cost = cost_at_equal_epochs(x, shown, seed, args.cost_rounds, args.cost_scale)
        print(cost, flush=True)
        bc.write_result(stem.with_name(stem.name + "_cost"), cost_table(cost, args), cost)
    if args.cost_only:
        return
    if args.merge_vaekit:
        merge_vaekit(stem, draws_asked)
        return
    if args.baselines_only:
        for seed in (int(s) for s in args.draws.split(",")):
            shown = draw_labels(y, args.labels, seed)
            found = baselines(x, shown, xt, yt, seed)
            found["clusterer"] = clusterer_row(x, shown, xt, yt, seed)
            append_line(stem.with_name(stem.name + "_baselines.jsonl"), dict(draw=seed, rows=found))
        return
    judge, judge_name, judge_real = pick_judge(x, y, xt, yt)
    if args.vaekit_only:
        for seed in (int(s) for s in args.draws.split(",")):
            shown = draw_labels(y, args.labels, seed)
            found = vaekit_row(x, shown, xt, yt, seed, judge)
            line = dict(draw=seed, **found, judge=judge_name, judge_real=judge_real)
            append_line(stem.with_name(stem.name + "_vaekit.jsonl"), line)
        return
    rows: dict[str, list[tuple[float, float]]] = {}
    samples: dict[str, object] = {"aggregate": [], "prior": [], "judge": judge_name,
                                  "judge_real": judge_real}
    for seed in (int(s) for s in args.draws.split(",")):
        shown = draw_labels(y, args.labels, seed)
        found = vaekit_row(x, shown, xt, yt, seed, judge)
        rows.setdefault("vaekit", []).append((found["acc"], found["sec"]))
        samples["aggregate"].append(found["samples"])
        samples["prior"].append(found["samples_prior"])
        for name, val in baselines(x, shown, xt, yt, seed).items():
            rows.setdefault(name, []).append(val)
        rows.setdefault("clusterer", []).append(clusterer_row(x, shown, xt, yt, seed))
        print(seed, {k: v[-1] for k, v in rows.items()}, found, flush=True)
    md = table(rows, samples, args)
    bc.write_result(stem, md, {"args": vars(args) | {"out_dir": str(args.out_dir)},
                               "rows": rows, "samples_judged": samples})


if __name__ == "__main__":
    main()
