"""Custom-layer benchmark: a GLU written once with llmasos' neutral ops vs the same layer written
natively in torch, measured side by side in one run and printed as ratios.

    python benchmarks/bench_layers.py [--steps 100] [--repeats 9] [--threads 1]

* layer: forward + backward of the GLU alone — llmasos' module for the registered layer (its
  call run with the torch op set) vs an ``nn.Module`` doing the same with torch directly.
* model: forward + backward + loss of a 256-GLU(256)-10 classifier — llmasos' compiled torch
  model vs a hand-written ``nn.Module`` with the native GLU.

Both sides hold the same weights (checked equal before timing) and see the same batches (64
rows). Target: ratio <= 1.10. Each timing is ``--steps`` steps; the two sides alternate
``--repeats`` times after a warm-up, and a ratio is the median of adjacent pairs' ratios, printed
with their range; the CPU heads the table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmasos import Model, layers
from llmasos.cpu import describe

FEATURES, UNITS, CLASSES, BATCH = 256, 256, 10, 64


@layers.register("GLU")
class GLU(layers.Layer):
    def __init__(self, units):
        self.units = units

    def output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def weight_shapes(self, input_shape):
        return {"kernel": (input_shape[-1], 2 * self.units), "bias": (2 * self.units,)}

    def call(self, ops, x, kernel, bias):
        a, b = ops.split(ops.matmul(x, kernel) + bias, 2, axis=-1)
        return a * ops.sigmoid(b)


class NativeGLU(nn.Module):
    """The GLU as one writes it in torch: the neutral (in, 2 * units) kernel, used as it is."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.from_numpy(kernel.copy()))
        self.bias = nn.Parameter(torch.from_numpy(bias.copy()))

    def forward(self, x):
        a, b = (torch.matmul(x, self.kernel) + self.bias).chunk(2, dim=-1)
        return a * torch.sigmoid(b)


class NativeModel(nn.Module):
    def __init__(self, weights: dict) -> None:
        super().__init__()
        self.glu = NativeGLU(weights["glu"]["kernel"], weights["glu"]["bias"])
        self.head = nn.Linear(UNITS, CLASSES)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(weights["dense"]["kernel"].T.copy()))
            self.head.bias.copy_(torch.from_numpy(weights["dense"]["bias"]))

    def forward(self, x):
        return self.head(self.glu(x))


def alternate(a, b, repeats):
    """Seconds of a() and b() run alternately after one warm-up each: their medians and the
    ratio a/b of each adjacent pair (load on a shared machine hits a pair alike)."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        start = time.perf_counter(); a(); times_a.append(time.perf_counter() - start)
        start = time.perf_counter(); b(); times_b.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b), [x / y for x, y in zip(times_a, times_b)]


def steps(forward, params, batches, labels):
    """``len(batches)`` forward + backward steps (gradients cleared each time, as a trainer does)."""
    def run():
        for x, y in zip(batches, labels):
            for p in params:
                p.grad = None
            out = forward(x)
            loss = F.cross_entropy(out, y) if y is not None else out.square().mean()
            loss.backward()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: two busy threads on a shared 2-core machine mostly measure waiting)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = Model(input_dim=FEATURES, output_dim=CLASSES, framework="torch")
    model.add_layer("GLU", UNITS).add_layer("Dense", CLASSES, activation="softmax")
    model.build(seed=0)
    ours = model.backend_model.train()
    native = NativeModel(model.get_weights()).train()
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.standard_normal((BATCH, FEATURES), dtype=np.float32)) for _ in range(args.steps)]
    labels = [torch.from_numpy(rng.integers(0, CLASSES, BATCH)) for _ in range(args.steps)]
    with torch.no_grad():
        diff = (ours(batches[0], logits=True) - native(batches[0])).abs().max().item()
    assert diff < 1e-5, f"the two models differ by {diff}"

    ours_layer = ours.blocks["glu"]
    rows = [
        ("layer fwd+bwd: llmasos GLU (ops) vs native torch", *alternate(
            steps(ours_layer, list(ours_layer.parameters()), batches, [None] * len(batches)),
            steps(native.glu, list(native.glu.parameters()), batches, [None] * len(batches)), args.repeats)),
        ("model fwd+bwd: llmasos model vs hand-written", *alternate(
            steps(lambda x: ours(x, logits=True), list(ours.parameters()), batches, labels),
            steps(native, list(native.parameters()), batches, labels), args.repeats)),
    ]
    print(f"CPU: {describe()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps of batch {BATCH}, "
          f"{args.repeats} alternating repeats")
    print(f"{'measure':52s} {'ours s':>8s} {'native s':>8s} {'ratio':>7s} {'pairs min-max':>13s} {'target':>7s}")
    for label, t_ours, t_native, ratios in rows:
        print(f"{label:52s} {t_ours:8.3f} {t_native:8.3f} {statistics.median(ratios):7.3f} "
              f"{min(ratios):.3f}-{max(ratios):.3f}   <=1.10")


if __name__ == "__main__":
    main()
