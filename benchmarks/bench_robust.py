"""Adversarial robustness on digits (issue 15's figures): the digits CNN (two 3x3 convs, max-pool,
two Dense layers) trained undefended and with PGD adversarial training (PGD-10 at eps 0.1, as
Madry et al.), in torch and TensorFlow; accuracy clean, under FGSM and under PGD-40 at eps
0.05 / 0.1 / 0.2; then attack speed (examples/s) of llmasos' PGD and FGSM beside torchattacks'
on the same torch model, both side by side in one run.

    python benchmarks/bench_robust.py                      # both frameworks, 15 epochs
    python benchmarks/bench_robust.py --only torch --epochs 5 --plot robustness.png

Speed figures are medians of alternating repeats with their range (a shared machine's noise hits
both alike); the CPU heads the output.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from llmasos.cpu import describe

EPS = (0.05, 0.1, 0.2)


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tests' split: 8x8 images in [0, 1] as (n, 1, 8, 8), 80/20 after a seeded shuffle."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(0.8 * len(x))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def digits_cnn(framework: str):
    from llmasos import Model

    model = Model(input_shape=(1, 8, 8), output_dim=10, framework=framework)
    model.add_layer("Conv2D", 8, kernel_size=3, padding="same", activation="relu")
    model.add_layer("Conv2D", 8, kernel_size=3, padding="same", activation="relu")
    model.add_layer("MaxPool2D", 2).add_layer("Flatten")
    return model.add_layer("Dense", 32, activation="relu").add_layer("Dense", 10, activation="softmax")


def trained(framework: str, adversarial, epochs: int, data) -> tuple[object, float]:
    """A digits CNN trained for ``epochs`` (seed 0), and the seconds it took."""
    from llmasos import Dataset, Optimizer

    x, y, _, _ = data
    model = digits_cnn(framework)
    start = time.perf_counter()
    model.train(Dataset(x, y, mode="train"), Optimizer("Adam", lr=0.003), epochs=epochs, batch_size=32, seed=0,
                progress=False, adversarial=adversarial)
    return model, time.perf_counter() - start


def accuracies(model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Clean accuracy, then FGSM and PGD-40 (alpha 2.5 eps / 40, random start) at each eps."""
    from llmasos import robust

    def accuracy(images):
        return float((robust.predicted_labels(model, images) == y).mean())

    row = {"clean": accuracy(x)}
    for eps in EPS:
        row[f"FGSM {eps:g}"] = accuracy(robust.fgsm(model, x, y, eps=eps))
        row[f"PGD-40 {eps:g}"] = accuracy(robust.pgd(model, x, y, eps=eps, alpha=2.5 * eps / 40, steps=40))
    return row


def speed(model, x: np.ndarray, y: np.ndarray, repeats: int) -> list[str]:
    """Examples/s of robust.pgd (PGD-10) and robust.fgsm beside torchattacks' on the same module."""
    try:
        import torch
        import torchattacks
    except ImportError:
        return ["torchattacks is not installed (pip install torchattacks --no-deps): no speed comparison"]
    from llmasos import robust

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = model.compiled.module

        def forward(self, images):
            return self.module(images, logits=True)

    net, images, labels = Logits().eval(), torch.from_numpy(x), torch.from_numpy(y)
    # FGSM is one gradient: ten of them per timing, so each lasts long enough to time on a busy machine
    runs = {
        "PGD-10": (lambda: robust.pgd(model, x, y, eps=0.1, alpha=0.01, steps=10, random_start=False, batch_size=len(x)),
                   lambda: torchattacks.PGD(net, eps=0.1, alpha=0.01, steps=10, random_start=False)(images, labels)),
        "FGSM": (lambda: [robust.fgsm(model, x, y, eps=0.1, batch_size=len(x)) for _ in range(10)],
                 lambda: [torchattacks.FGSM(net, eps=0.1)(images, labels) for _ in range(10)]),
    }
    calls = {"PGD-10": 1, "FGSM": 10}
    lines = []
    for name, (ours, theirs) in runs.items():
        times: dict[str, list[float]] = {"llmasos": [], "torchattacks": []}
        for turn in range(repeats + 1):   # the first turn warms both up and is dropped
            order = [("llmasos", ours), ("torchattacks", theirs)]
            for label, run in order if turn % 2 else order[::-1]:
                start = time.perf_counter()
                run()
                if turn:
                    times[label].append(time.perf_counter() - start)
        rate = {k: [calls[name] * len(x) / t for t in v] for k, v in times.items()}
        ratios = [a / b for a, b in zip(rate["llmasos"], rate["torchattacks"])]
        lines.append(f"{name:7s} llmasos {statistics.median(rate['llmasos']):8.0f} ex/s "
                     f"({min(rate['llmasos']):.0f}-{max(rate['llmasos']):.0f})   torchattacks "
                     f"{statistics.median(rate['torchattacks']):8.0f} ex/s "
                     f"({min(rate['torchattacks']):.0f}-{max(rate['torchattacks']):.0f})   ratio "
                     f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["torch", "tf"], help="one framework (default: both)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--test", type=int, default=360, help="test images attacked (the split has 360)")
    parser.add_argument("--repeats", type=int, default=5, help="speed repeats")
    parser.add_argument("--plot", help="write PGD-40 accuracy against eps, per model, to this image")
    parser.add_argument("--speed-only", action="store_true", help="only the attack speed (trains the torch model)")
    args = parser.parse_args()
    from llmasos import robust

    data = digits()
    x_test, y_test = data[2][:args.test], data[3][:args.test]
    print(f"CPU: {describe()}")
    if args.speed_only:
        model, _ = trained("torch", None, args.epochs, data)
        print("attack speed on the undefended torch model, one batch of", len(x_test))
        for line in speed(model, x_test, y_test, args.repeats):
            print("  " + line)
        return
    print(f"digits CNN, {len(data[0])} training images, {args.epochs} epochs (Adam 0.003, batch 32, seed 0); "
          f"{len(x_test)} test images\n")
    rows, models = {}, {}
    for framework in [args.only] if args.only else ["torch", "tf"]:
        for defence, adversarial in (("undefended", None), ("PGD-trained", robust.PGD(eps=0.1, alpha=0.01, steps=10))):
            model, seconds = trained(framework, adversarial, args.epochs, data)
            models[framework, defence] = model
            rows[f"{framework} {defence}"] = accuracies(model, x_test, y_test)
            print(f"  trained {framework} {defence} in {seconds:.0f} s", flush=True)
    columns = list(next(iter(rows.values())))
    print("\n| model | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    for framework in [args.only] if args.only else ["torch", "tf"]:
        plain, hardened = rows[f"{framework} undefended"], rows[f"{framework} PGD-trained"]
        print(f"{framework}: PGD-40 at eps 0.1 {plain['PGD-40 0.1']:.3f} -> {hardened['PGD-40 0.1']:.3f} "
              f"({100 * (hardened['PGD-40 0.1'] - plain['PGD-40 0.1']):+.1f} points), clean "
              f"{plain['clean']:.3f} -> {hardened['clean']:.3f} ({100 * (hardened['clean'] - plain['clean']):+.1f} points)")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(5, 3.5))
        for name, row in rows.items():
            axes.plot([0, *EPS], [row["clean"], *(row[f"PGD-40 {e:g}"] for e in EPS)], marker="o", label=name)
        axes.set_xlabel("eps (L-inf)")
        axes.set_ylabel("accuracy under PGD-40")
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(args.plot)
        print(f"plot: {args.plot}")
    if ("torch", "undefended") in models:
        print("\nattack speed on the undefended torch model, one batch of", len(x_test))
        for line in speed(models["torch", "undefended"], x_test, y_test, args.repeats):
            print("  " + line)


if __name__ == "__main__":
    main()
