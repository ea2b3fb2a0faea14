"""Mixed precision on the CPU: training samples/s at precision "32" vs "bf16-mixed" (and "16-mixed"),
side by side in one run, torch and TensorFlow, for the seed MLP and a wider one.

    python benchmarks/bench_precision.py                  # both frameworks
    python benchmarks/bench_precision.py --only torch --precisions 32,bf16-mixed
    python benchmarks/bench_precision.py --threads 1 --repeats 3      # a loaded machine

Each figure is the median of alternating repeats of one epoch (noise on a shared machine hits
every precision alike), printed with its range and the ratio to float32; the CPU and its
instruction sets head the table, because bfloat16 only pays where the CPU computes it natively
(AVX-512 BF16 / AMX); elsewhere autocast converts in software and costs time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from llmasos.cpu import describe

ROWS, FEATURES, CLASSES = 8_192, 784, 10
MODELS = {"seed MLP 784-128-10, batch 32": ((128,), 32), "wide MLP 784-1024-1024-10, batch 256": ((1024, 1024), 256)}


def _model(framework: str, hidden: tuple[int, ...]):
    from llmasos import Model

    model = Model(input_dim=FEATURES, output_dim=CLASSES, framework=framework)
    for units in hidden:
        model.add_layer("Dense", units, activation="relu")
    return model.add_layer("Dense", CLASSES, activation="softmax").build(seed=0)


def _epochs(framework: str, hidden, batch: int, precisions: list[str], repeats: int) -> dict[str, list[float]]:
    """Seconds per epoch for each precision, measured in turns after one warm-up epoch each."""
    from llmasos import Dataset, Optimizer

    rng = np.random.default_rng(0)
    data = Dataset(rng.random((ROWS, FEATURES), dtype=np.float32), rng.integers(0, CLASSES, ROWS), mode="train")
    models = {p: _model(framework, hidden) for p in precisions}
    optimizers = {p: Optimizer("Adam", lr=1e-3) for p in precisions}

    def epoch(precision: str) -> float:
        start = time.perf_counter()
        models[precision].train(data, optimizers[precision], epochs=1, batch_size=batch, seed=0, progress=False,
                                precision=precision)
        return time.perf_counter() - start

    for p in precisions:
        epoch(p)
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(repeats):
        for p in precisions:
            times[p].append(epoch(p))
    return times


def _set_threads(count: int, frameworks: list[str]) -> None:
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(count)
    if "tf" in frameworks:
        from llmasos.adapters.coexist import before_tensorflow

        before_tensorflow()   # as llmasos loads TensorFlow: triton first, so torch keeps it
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="torch,tf", help="frameworks, comma-separated")
    parser.add_argument("--precisions", default="32,bf16-mixed,16-mixed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch and TensorFlow (default theirs; 1 on a loaded machine, where "
                             "threads that wait for each other measure the scheduler)")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    if args.threads:
        _set_threads(args.threads, args.only.split(","))
    print(f"{describe()}; threads: {args.threads or 'default'}")
    print(f"{ROWS} rows x {FEATURES} features, Adam; median seconds per epoch [min-max], samples/s, x fp32")
    for framework in args.only.split(","):
        for name, (hidden, batch) in MODELS.items():
            times = _epochs(framework, hidden, batch, precisions, args.repeats)
            base = statistics.median(times[precisions[0]])
            for p in precisions:
                median = statistics.median(times[p])
                print(f"{framework:5} {name:38} {p:10} {median:7.3f} s [{min(times[p]):.3f}-{max(times[p]):.3f}] "
                      f"{ROWS / median:9.0f}/s  x{base / median:.2f}")


if __name__ == "__main__":
    main()
