"""Zoo inference benchmark: ResNet-18 at 224x224, batch 1 and 32, every runtime in one table.

    python benchmarks/bench_zoo.py                    # batch 1 and 32
    python benchmarks/bench_zoo.py --batches 1 --repeats 20 --model resnet50
    python benchmarks/bench_zoo.py --threads 1 --cpu-time   # steadier on a busy shared machine

Rows, all with the same weights (torchvision's random init, BatchNorm statistics calibrated):

* torchvision: torchvision's own model, the reference;
* llmasos torch (module): the spec-compiled ``nn.Module`` called directly (target ratio <= 1.05);
* llmasos torch (predict): the same through ``Model.predict`` (NumPy in and out);
* llmasos tf (predict): the Keras model through ``Model.predict``;
* onnxruntime: the llmasos export run by ONNX Runtime on CPU.

Each time is the median of several round-robin repeats (so noise on a shared machine hits every
row alike) in milliseconds per batch; "max |diff|" is against torchvision's logits. ``--threads``
sets every runtime's intra-op threads; ``--cpu-time`` measures the process's CPU time instead of
wall time, which other processes on the machine barely disturb (use it with ``--threads 1``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Callable

import numpy as np

from llmasos.cpu import describe

Runner = Callable[[np.ndarray], np.ndarray]


def reference(name: str, folder: str):
    """torchvision's model in eval mode, and its state dict saved as a checkpoint file."""
    import torch
    import torchvision

    torch.manual_seed(0)
    module = getattr(torchvision.models, name)()
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.momentum = None  # a cumulative average: calibrated statistics, as in a trained net
    module.train()
    with torch.no_grad():
        for _ in range(2):
            module(torch.randn(8, 3, 224, 224))
    module.eval()
    path = os.path.join(folder, f"{name}.pth")
    torch.save(module.state_dict(), path)
    return module, path


def runners(name: str, folder: str, only: set[str], threads: int | None) -> dict[str, Runner]:
    import torch

    if threads:
        torch.set_num_threads(threads)

    module, path = reference(name, folder)

    def torch_call(net: torch.nn.Module) -> Runner:
        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()
        return run

    return {"torchvision": torch_call(module), **llmasos_runners(name, folder, only, threads, pretrained=path,
                                                                  logits=True)}


def llmasos_runners(name: str, folder: str, only: set[str], threads: int | None = None,
                    **options) -> dict[str, Runner]:
    """llmasos' rows for the zoo model ``name`` (``zoo.load`` options such as ``pretrained``): the
    spec-compiled torch module called directly, torch and TF through ``Model.predict``, and ONNX
    Runtime on the torch model's export. Each takes what ``Model.predict`` takes (an array, or a
    dict of arrays by input name)."""
    import torch

    from llmasos import export, zoo

    out: dict[str, Runner] = {}
    ours = zoo.load(name, "torch", **options) if only & {"torch", "onnx"} else None
    if "torch" in only:
        module = ours.backend_model.eval()

        def call(x):
            with torch.inference_mode():
                return module(*(torch.from_numpy(a) for a in ours.shape_input(x))).numpy()

        out["llmasos torch (module)"] = call
        out["llmasos torch (predict)"] = ours.predict
    if "tf" in only:
        if threads:
            import tensorflow as tf  # before TensorFlow runs anything, or the settings are refused

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        out["llmasos tf (predict)"] = zoo.load(name, "tf", **options).predict
    if "onnx" in only:
        import onnxruntime

        path = os.path.join(folder, f"{name}.onnx")
        export.to_onnx(ours, path)
        settings = onnxruntime.SessionOptions()
        settings.intra_op_num_threads = threads or 0
        session = export.load(path, providers=["cpu"], options=settings)
        names = [i.name for i in session.get_inputs()]
        out["onnxruntime cpu"] = lambda x: session.run(None, dict(zip(names, ours.shape_input(x))))[0]
    return out


def measure(run: dict[str, Runner], x: np.ndarray, repeats: int, clock: Callable[[], float]) -> dict[str, float]:
    """Median seconds per call of each runner, called round robin after one warm-up each."""
    for fn in run.values():
        fn(x)
    times: dict[str, list[float]] = {label: [] for label in run}
    for _ in range(repeats):
        for label, fn in run.items():
            start = clock()
            fn(x)
            times[label].append(clock() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def print_against_reference(run: dict[str, Runner], x, repeats: int, column: str, value: str,
                            reference: str = "transformers", target_label: str = "llmasos torch (module)") -> None:
    """One table row per runtime on input ``x``: ms per call, the ratio to ``reference``, the
    target ratio of ``target_label`` (<= 1.05) and the largest difference from the reference's
    output. ``column``/``value`` name and show what this input varies (batch, audio length)."""
    want = run[reference](x)
    seconds = measure(run, x, repeats, time.perf_counter)
    for label, fn in run.items():
        target = "<=1.05" if label == target_label else ""
        diff = float(np.abs(fn(x) - want).max())
        print(f"{label:26s} {value:>{len(column)}s} {seconds[label] * 1e3:9.2f} "
              f"{seconds[label] / seconds[reference]:7.3f} {target:>7s} {diff:11.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="a torchvision-backed zoo model (default resnet18)")
    parser.add_argument("--batches", default="1,32", help="comma list of batch sizes")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="torch,tf,onnx", help="runtimes besides torchvision: torch, tf, onnx")
    parser.add_argument("--threads", type=int, help="intra-op threads of every runtime (default: theirs)")
    parser.add_argument("--cpu-time", action="store_true", help="time process CPU instead of wall clock")
    args = parser.parse_args()
    print(f"CPU: {describe()}", flush=True)
    clock = time.process_time if args.cpu_time else time.perf_counter
    with tempfile.TemporaryDirectory() as folder:
        run = runners(args.model, folder, set(args.only.split(",")), args.threads)
        rng = np.random.default_rng(0)
        print(f"{args.model} 224x224, ms per batch ({'CPU' if args.cpu_time else 'wall'} time, median of "
              f"{args.repeats}, threads {args.threads or 'default'}); ratio vs torchvision")
        print(f"{'runtime':26s} {'batch':>5s} {'ms':>9s} {'ratio':>7s} {'target':>7s} {'max |diff|':>11s}")
        for batch in map(int, args.batches.split(",")):
            x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
            want = run["torchvision"](x)
            seconds = measure(run, x, args.repeats, clock)
            for label, fn in run.items():
                target = "<=1.05" if label == "llmasos torch (module)" else ""
                diff = float(np.abs(fn(x) - want).max())
                print(f"{label:26s} {batch:5d} {seconds[label] * 1e3:9.2f} "
                      f"{seconds[label] / seconds['torchvision']:7.3f} {target:>7s} {diff:11.2e}")


if __name__ == "__main__":
    main()
