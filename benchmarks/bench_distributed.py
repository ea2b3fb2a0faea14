"""Data-parallel training benchmarks (issue 11), measured side by side in one run.

    python benchmarks/bench_distributed.py                 # MLP and CNN, 2 repeats, 3 epochs each
    python benchmarks/bench_distributed.py --repeats 3 --only mlp
    python benchmarks/bench_distributed.py --only mlp,cnn --ratio-only --repeats 3   # the DDP ratio alone

* samples/s of the seed MLP (784-128-10, 20,000 rows) and a small CNN (1x28x28, conv 8 3x3, pool,
  dense 10, 10,000 rows; no BatchNorm) trained with Adam at global batch 64 through llmasos at
  ``nproc`` 1 and 2, with the default threads (torch's own at nproc 1, cores / nproc per worker
  at 2) and with 1 thread per worker; scaling efficiency = samples/s at 2 / (2 x samples/s at 1).
* llmasos DDP vs a hand-written torch DDP script (``torch_ddp_reference.py``: the same model,
  data, global batch and slices, DDP's and torch.optim's defaults) at nproc 2: epoch-time ratio
  (target <= 1.05).
* ``precision="bf16-mixed"`` vs fp32 at nproc 1 (MLP, 1 thread).

Epoch times are the workers' own (rank 0's History ``seconds``; the reference script's timer), the
first epoch left out (start-up, warm-up), so launching the processes is not counted. Repeats
alternate the configurations, so a shared machine's noise hits all alike; figures are medians with
the range, and the CPU heads the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from llmasos.cpu import describe

BATCH = 64
ROWS = {"mlp": 20_000, "cnn": 10_000}
HERE = Path(__file__).parent


def data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((rows, 784), dtype=np.float32), rng.integers(0, 10, rows).astype(np.int64)


def model(kind: str):
    from llmasos import Model

    if kind == "mlp":
        net = Model(input_dim=784, output_dim=10, framework="torch")
        return net.add_layer("Dense", 128, activation="relu").add_layer("Dense", 10, activation="softmax")
    net = Model(input_shape=(1, 28, 28), output_dim=10, framework="torch")
    net.add_layer("Conv2D", 8, kernel_size=3, activation="relu").add_layer("MaxPool2D", 2).add_layer("Flatten")
    return net.add_layer("Dense", 10, activation="softmax")


@contextlib.contextmanager
def threads(count: int | None):
    """``count`` threads for this process's torch and for the workers it starts (None: defaults)."""
    import torch

    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    if count is not None:
        torch.set_num_threads(count)
        os.environ["OMP_NUM_THREADS"] = str(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env


def llmasos_epochs(kind: str, x, y, nproc: int, epochs: int, **options) -> list[float]:
    from llmasos import Dataset, Optimizer

    net = model(kind)
    history = net.train(Dataset(x.reshape(-1, 1, 28, 28) if kind == "cnn" else x, y, mode="train"),
                        Optimizer("Adam", lr=1e-3), epochs=epochs, batch_size=BATCH, seed=0, progress=False,
                        nproc=nproc, **options)
    return history["seconds"][1:]


def reference_epochs(kind: str, folder: str, nproc: int, epochs: int) -> list[float]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               str(HERE / "torch_ddp_reference.py"), folder, kind, str(epochs), str(BATCH)]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"][1:]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def bench(kind: str, repeats: int, epochs: int, ratio_only: bool = False) -> None:
    x, y = data(ROWS[kind])
    configs = {"nproc 1": (1, None), "nproc 2": (2, None), "nproc 1, 1 thread": (1, 1), "nproc 2, 1 thread each": (2, 1)}
    if ratio_only:   # the DDP comparison alone (nproc 2, cores / 2 threads each), not the scaling
        configs = {"nproc 2": configs["nproc 2"]}
    rates: dict[str, list[float]] = {name: [] for name in configs}
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as folder:
        np.save(f"{folder}/x.npy", x)
        np.save(f"{folder}/y.npy", y)
        for _ in range(repeats):
            for name, (nproc, count) in configs.items():
                with threads(count):
                    seconds = statistics.median(llmasos_epochs(kind, x, y, nproc, epochs))
                rates[name].append(len(x) / seconds)
                if name == "nproc 2":
                    ours.append(seconds)
                    theirs.append(statistics.median(reference_epochs(kind, folder, 2, epochs)))
    print(f"\n{kind.upper()}, {len(x):,} rows, global batch {BATCH}, Adam; samples/s, median (range) of {repeats}")
    for name, values in rates.items():
        print(f"  {name:24s} {spread(values)}")
    for suffix in () if ratio_only else ("", ", 1 thread each"):
        one = statistics.median(rates["nproc 1" + (", 1 thread" if suffix else "")])
        two = statistics.median(rates["nproc 2" + suffix])
        print(f"  scaling efficiency{suffix or ' (default threads)'}: {two / (2 * one):.2f}")
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"  epoch at nproc 2: llmasos {spread(ours)} s, hand-written torch DDP {spread(theirs)} s, "
          f"ratio {spread(ratios)} (target <= 1.05)")


def bench_precision(repeats: int, epochs: int) -> None:
    x, y = data(ROWS["mlp"])
    fp32, bf16 = [], []
    with threads(1):   # one thread: on a small shared machine more threads mostly wait for each other
        for _ in range(repeats):
            fp32.append(statistics.median(llmasos_epochs("mlp", x, y, 1, epochs, precision="32")))
            bf16.append(statistics.median(llmasos_epochs("mlp", x, y, 1, epochs, precision="bf16-mixed")))
    print(f"\nMLP epoch at nproc 1, 1 thread: fp32 {spread(fp32)} s, bf16-mixed {spread(bf16)} s, "
          f"bf16/fp32 {spread([b / f for b, f in zip(bf16, fp32)])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is left out")
    parser.add_argument("--only", default="mlp,cnn,precision", help="comma-separated: mlp, cnn, precision")
    parser.add_argument("--ratio-only", action="store_true",
                        help="only llmasos DDP vs the hand-written torch DDP at nproc 2 (no scaling configurations)")
    args = parser.parse_args()
    print(f"CPU: {describe()}")
    chosen = args.only.split(",")
    for kind in ("mlp", "cnn"):
        if kind in chosen:
            bench(kind, args.repeats, args.epochs, args.ratio_only)
    if "precision" in chosen:
        bench_precision(args.repeats, args.epochs)


if __name__ == "__main__":
    main()
