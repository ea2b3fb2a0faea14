"""GPU benchmarks, side by side with the CPU in one run (``benchmarks/gpu_check.sh`` calls this):

* parity: the digits MLP trained one epoch from the same weights on "cpu" and "cuda" (torch; TF
  where its GPU build sees the GPU): max abs weight difference;
* training speed: samples/s of an epoch of a wide MLP on the CPU and on CUDA at precision "32",
  "bf16-mixed" and "16-mixed" (the AMP speed-up is the ratio to CUDA fp32);
* ONNX Runtime: the same model exported, median ms per batch of 256 on the CPU and CUDA providers,
  with the max abs difference of their outputs.

Without a GPU the GPU halves print why they were skipped and the CPU halves still run, so the
script is checked on any machine: ``python benchmarks/bench_gpu.py --quick``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from llmasos.cpu import describe

FEATURES, CLASSES = 784, 10


def _gpu() -> str | None:
    """The CUDA device's name, or None (with the reason printed)."""
    import torch

    if not torch.cuda.is_available():
        print("GPU: none (torch.cuda.is_available() is False): GPU figures skipped")
        return None
    return torch.cuda.get_device_name(0)


def _model(framework: str, device: str, hidden: tuple[int, ...], features: int = FEATURES):
    from llmasos import Model

    model = Model(input_dim=features, output_dim=CLASSES, framework=framework, device=device)
    for units in hidden:
        model.add_layer("Dense", units, activation="relu")
    return model.add_layer("Dense", CLASSES, activation="softmax").build(seed=0)


def parity(gpu: bool) -> None:
    from sklearn.datasets import load_digits

    from llmasos import Dataset, Optimizer
    from llmasos.adapters import get_backend

    data = load_digits()
    ds = Dataset((data.data / 16.0).astype(np.float32), data.target, mode="train")
    for framework in ("torch", "tf"):
        try:
            present = get_backend(framework).devices()
        except Exception as err:  # noqa: BLE001 - a framework that is not installed: say so, go on
            print(f"parity {framework}: skipped ({err})")
            continue
        if not gpu or "cuda:0" not in present:
            print(f"parity {framework}: skipped (devices here: {', '.join(present)})")
            continue
        start = _model(framework, "cpu", (64,), 64).get_weights()
        weights = {}
        for device in ("cpu", "cuda"):
            model = _model(framework, device, (64,), 64)
            model.set_weights(start)
            model.train(ds, Optimizer("Adam", lr=0.01), epochs=1, batch_size=32, seed=0, progress=False)
            weights[device] = model.get_weights()
        diff = max(float(np.abs(weights["cpu"][layer][name] - value).max())
                   for layer, ws in weights["cuda"].items() for name, value in ws.items())
        print(f"parity {framework}: one digits epoch on cuda vs cpu, max abs weight difference {diff:.2e}")


def speed(gpu: bool, rows: int, repeats: int) -> None:
    from llmasos import Dataset, Optimizer

    rng = np.random.default_rng(0)
    ds = Dataset(rng.random((rows, FEATURES), dtype=np.float32), rng.integers(0, CLASSES, rows), mode="train")
    runs = [("cpu", "32")] + ([("cuda", p) for p in ("32", "bf16-mixed", "16-mixed")] if gpu else [])
    models = {run: _model("torch", run[0], (2048, 2048)) for run in runs}
    optimizers = {run: Optimizer("Adam", lr=1e-3) for run in runs}

    def epoch(run) -> float:
        start = time.perf_counter()
        models[run].train(ds, optimizers[run], epochs=1, batch_size=256, seed=0, progress=False, precision=run[1])
        if run[0] == "cuda":
            import torch

            torch.cuda.synchronize()
        return time.perf_counter() - start

    for run in runs:
        epoch(run)
    times = {run: [] for run in runs}
    for _ in range(repeats):
        for run in runs:
            times[run].append(epoch(run))
    base = statistics.median(times[("cuda", "32")]) if gpu else None
    for run, values in times.items():
        median = statistics.median(values)
        ratio = f"  x{base / median:.2f} vs cuda fp32" if base else ""
        print(f"train torch 784-2048-2048-10 batch 256 on {run[0]:4} precision {run[1]:10} "
              f"{rows / median:10.0f} samples/s [{min(values):.3f}-{max(values):.3f} s/epoch]{ratio}")


def onnx_runtime(gpu: bool, repeats: int) -> None:
    from llmasos import export

    import onnxruntime as ort

    model = _model("torch", "cpu", (2048, 2048))
    x = np.random.default_rng(1).random((256, FEATURES), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "mlp.onnx")
        export.to_onnx(model, path)
        providers = ["cpu"]
        if gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            if hasattr(ort, "preload_dlls"):
                ort.preload_dlls()
            providers.append("cuda")
        elif gpu:
            print("ORT cuda: skipped (onnxruntime has no CUDAExecutionProvider: pip install onnxruntime-gpu)")
        outputs = {}
        for provider in providers:
            session = export.load(path, providers=[provider], strict=True)
            name = session.get_inputs()[0].name
            session.run(None, {name: x})
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                outputs[provider] = session.run(None, {name: x})[0]
                times.append(time.perf_counter() - start)
            print(f"ORT {provider:4} ({session.get_providers()[0]}): batch 256 median "
                  f"{1e3 * statistics.median(times):.2f} ms [{1e3 * min(times):.2f}-{1e3 * max(times):.2f}]")
        if "cuda" in outputs:
            print(f"ORT cuda vs cpu: max abs output difference {np.abs(outputs['cuda'] - outputs['cpu']).max():.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and repeats (a smoke run)")
    args = parser.parse_args()
    print(describe())
    name = _gpu()
    if name:
        print(f"GPU: {name}")
    parity(name is not None)
    speed(name is not None, rows=4_096 if args.quick else 32_768, repeats=2 if args.quick else 5)
    onnx_runtime(name is not None, repeats=5 if args.quick else 50)


if __name__ == "__main__":
    main()
