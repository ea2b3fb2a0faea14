"""Training-path benchmarks, measured side by side in one run and printed as ratios.

    python benchmarks/bench_train.py            # all
    python benchmarks/bench_train.py --only torch,import
    python benchmarks/bench_train.py --only torch_metrics --repeats 5 --rows 5000 --threads 1   # a busy machine
    python benchmarks/bench_train.py --only torch,torch_metrics --threads 1 --clock cpu          # a shared one

* torch: one epoch of the seed MLP (784-128-10, Adam, batch 32) on 20,000 rows through llmasos vs a
  hand-written torch loop over the same tensors with torch.optim's defaults (target ratio <= 1.05);
  then vs the same loop with the fused Adam llmasos makes, which leaves the facade's own cost.
* torch_metrics: the same epoch with ``metrics=["accuracy", "f1"]`` vs the hand-written loop (fused
  Adam) counting the same (arg-max hits and a confusion matrix per batch, macro F1 at the end;
  target <= 1.05).
* tf: the same through llmasos' TF adapter vs plain Keras ``fit`` (target <= 1.0).
* import: ``import llmasos`` wall time in a fresh interpreter (target <= 0.3 s).
* memory: the peak memory training adds from a CSV 10x the chunk size vs 1x (target: flat, ratio ~1),
  and from the 10x file loaded whole, for contrast.

Each timing is the median of several alternating repeats, so noise on a shared machine hits
both sides alike; a ratio is the median of the ratios of adjacent pairs, printed with their
range, and the CPU heads the table. ``--clock cpu --threads 1`` times the CPU the process used
instead of elapsed time, which other processes' load on a shared machine changes far less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from llmasos.cpu import describe

ROWS, FEATURES, CLASSES, BATCH = 20_000, 784, 10, 32


def data():
    rng = np.random.default_rng(0)
    x = rng.random((ROWS, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, ROWS).astype(np.int64)
    return x, y


def seed_model(framework):
    from llmasos import Model

    model = Model(input_dim=FEATURES, output_dim=CLASSES, framework=framework)
    model.add_layer("Dense", 128, activation="relu").add_layer("Dense", CLASSES, activation="softmax")
    return model.build(seed=0)


REPEATS = 7   # alternating pairs per comparison (--repeats)
CLOCK = time.perf_counter   # --clock cpu: time.process_time, the CPU this process used


def llmasos_epoch(framework, x, y, metrics=None):
    """One more epoch of the seed model through llmasos each time it is called."""
    from llmasos import Dataset, Optimizer

    ds = Dataset(x, y, mode="train")
    model = seed_model(framework)
    opt = Optimizer("Adam", lr=1e-3)

    def epoch():
        model.train(ds, opt, epochs=1, batch_size=BATCH, seed=0, progress=False, metrics=metrics)

    return epoch


def alternate(a, b, repeats=None):
    """Seconds of a() and b(), run alternately after one warm-up each: the medians, and the ratio
    a/b of each adjacent pair (load on a shared machine hits a pair alike, so these vary less)."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats or REPEATS):
        start = CLOCK(); a(); times_a.append(CLOCK() - start)
        start = CLOCK(); b(); times_b.append(CLOCK() - start)
    return statistics.median(times_a), statistics.median(times_b), [x / y for x, y in zip(times_a, times_b)]


def bench_torch():
    import torch
    import torch.nn.functional as F

    x, y = data()
    ours = llmasos_epoch("torch", x, y)

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    epoch = [0]

    def hand_loop(**adam: bool):
        """An epoch of the seed MLP written directly in torch, with Adam built with ``adam``'s options."""
        module = torch.nn.Sequential(torch.nn.Linear(FEATURES, 128), torch.nn.ReLU(), torch.nn.Linear(128, CLASSES))
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3, **adam)

        def run():
            epoch[0] += 1
            order = torch.from_numpy(np.random.default_rng([0, epoch[0]]).permutation(ROWS))
            module.train()
            for start in range(0, ROWS, BATCH):
                idx = order[start:start + BATCH]
                loss = F.cross_entropy(module(xt[idx]), yt[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        return run

    t_ours, t_raw, ratios = alternate(ours, hand_loop())
    rows = [("torch epoch: llmasos vs hand-written loop", t_ours, t_raw, 1.05, ratios)]
    # the same loop with the optimizer llmasos makes (torch's fused Adam): what the facade itself costs
    t_ours, t_fused, ratios = alternate(ours, hand_loop(fused=True))
    rows.append(("torch epoch: llmasos vs hand loop, fused Adam", t_ours, t_fused, None, ratios))
    return rows


def bench_torch_metrics():
    """The torch epoch with accuracy and macro F1, against a hand-written loop computing them the
    way a torch user would: per batch, arg-max hits and a bincount confusion matrix on the logits."""
    import torch
    import torch.nn.functional as F

    x, y = data()
    ours = llmasos_epoch("torch", x, y, metrics=["accuracy", "f1"])

    module = torch.nn.Sequential(torch.nn.Linear(FEATURES, 128), torch.nn.ReLU(), torch.nn.Linear(128, CLASSES))
    # the optimizer llmasos makes (fused Adam), so the ratio is the cost of the facade and its metrics
    torch_opt = torch.optim.Adam(module.parameters(), lr=1e-3, fused=True)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    epoch = [0]

    def raw():
        epoch[0] += 1
        order = torch.from_numpy(np.random.default_rng([0, epoch[0]]).permutation(ROWS))
        module.train()
        correct, confusion = 0, torch.zeros(CLASSES * CLASSES, dtype=torch.int64)
        for start in range(0, ROWS, BATCH):
            idx = order[start:start + BATCH]
            target = yt[idx]
            out = module(xt[idx])
            loss = F.cross_entropy(out, target)
            torch_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch_opt.step()
            with torch.no_grad():
                pred = out.argmax(1)
                correct += int((pred == target).sum())
                confusion += torch.bincount(target * CLASSES + pred, minlength=CLASSES * CLASSES)
        counts = confusion.reshape(CLASSES, CLASSES).double()
        tp = counts.diagonal()
        f1 = (2 * tp / (counts.sum(0) + counts.sum(1)).clamp(min=1)).mean().item()
        return correct / ROWS, f1

    t_ours, t_raw, ratios = alternate(ours, raw)
    return [("torch epoch, accuracy+f1: llmasos vs hand loop", t_ours, t_raw, 1.05, ratios)]


def bench_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    x, y = data()
    ours = llmasos_epoch("tf", x, y)

    keras.utils.set_random_seed(0)
    plain = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(CLASSES)])
    plain.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    def fit():
        plain.fit(x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0)

    t_ours, t_fit, ratios = alternate(ours, fit, repeats=3)
    return [("tf epoch: llmasos vs plain Keras fit", t_ours, t_fit, 1.0, ratios)]


def bench_import():
    def once():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import llmasos"], check=True)
        return time.perf_counter() - start

    def baseline():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        return time.perf_counter() - start

    t_import = statistics.median(once() for _ in range(7))
    t_python = statistics.median(baseline() for _ in range(7))
    return [("import llmasos (s, minus bare interpreter start)", t_import - t_python, 1.0, 0.3)]


_MEMORY_SCRIPT = """
import sys, tracemalloc
from llmasos import Dataset, Model, Optimizer
chunk = int(sys.argv[2]) or None
m = Model(input_dim=64, output_dim=10, framework=sys.argv[3])
m.add_layer("Dense", 32, activation="relu").add_layer("Dense", 10, activation="softmax")
m.build()  # the framework's own footprint comes first; what is traced after it is the data's
tracemalloc.start()  # NumPy and pandas report their buffers to tracemalloc
ds = Dataset(sys.argv[1], mode="train", chunk_size=chunk)
m.train(ds, Optimizer("SGD", lr=0.01), epochs=1, batch_size=64, progress=False)
print(tracemalloc.get_traced_memory()[1])
"""


def bench_memory():
    """Peak memory the data adds to training (traced allocations after the framework is loaded), streamed in chunks
    of 20,000 rows from CSVs of 1x and 10x the chunk, and the 10x file loaded whole for contrast."""
    import pandas as pd

    chunk = 20_000
    rng = np.random.default_rng(0)
    peaks = {}
    with tempfile.TemporaryDirectory() as folder:
        for factor in (1, 10):
            path = os.path.join(folder, f"data{factor}.csv")
            frame = pd.DataFrame(rng.random((chunk * factor, 64)).round(4), columns=[f"p{i}" for i in range(64)])
            frame["label"] = rng.integers(0, 10, len(frame))
            frame.to_csv(path, index=False)
            for label, size in (("streamed", chunk), ("whole", 0)):
                if label == "whole" and factor == 1:
                    continue
                out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, path, str(size), "torch"],
                                     check=True, capture_output=True, text=True)
                peaks[label, factor] = int(out.stdout.strip().splitlines()[-1]) / 2**20
    return [("data peak MB: 10x-chunk CSV vs 1x, streamed", peaks["streamed", 10], peaks["streamed", 1], 1.1),
            ("data peak MB: 10x CSV loaded whole vs 1x streamed", peaks["whole", 10], peaks["streamed", 1], None)]


BENCHES = {"torch": bench_torch, "torch_metrics": bench_torch_metrics, "tf": bench_tf, "import": bench_import, "memory": bench_memory}


def main() -> None:
    global REPEATS, ROWS, CLOCK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma list of {', '.join(BENCHES)}")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="alternating pairs per timed comparison")
    parser.add_argument("--rows", type=int, default=ROWS, help="rows an epoch trains on (torch, torch_metrics, tf)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default torch's own; 1 on a loaded machine, where threads "
                             "that wait for each other measure the scheduler)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time; cpu: the CPU time the process used (with --threads 1 on a "
                             "shared machine, what other processes' load changes least)")
    args = parser.parse_args()
    REPEATS, ROWS = args.repeats, args.rows
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(f"CPU: {describe()}; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}; "
          f"{ROWS:,} rows an epoch, {REPEATS} pairs, torch threads: {args.threads or 'default'}, {args.clock} clock")
    print(f"{'measure':52s} {'ours':>10s} {'reference':>10s} {'ratio':>7s} {'pairs min-max':>13s} {'target':>7s}")
    for name in args.only.split(","):
        # each row as soon as it is measured: a run cut short still reports what it finished
        for label, ours, ref, target, *pairs in BENCHES[name]():
            ratio = statistics.median(pairs[0]) if pairs else ours / ref if ref else float("nan")
            spread = f"{min(pairs[0]):.3f}-{max(pairs[0]):.3f}" if pairs else ""
            bound = "" if target is None else "<=" + str(target)
            print(f"{label:52s} {ours:10.3f} {ref:10.3f} {ratio:7.3f} {spread:>13s} {bound:>7s}", flush=True)


if __name__ == "__main__":
    main()
