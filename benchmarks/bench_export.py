"""Export-path benchmarks, measured side by side in one run and printed as ratios.

    python benchmarks/bench_export.py                 # all
    python benchmarks/bench_export.py --only eager    # or int8; --seconds 2 for steadier numbers

* eager: ONNX Runtime fp32 vs the source framework's eager inference (a torch ``nn.Module`` under
  ``inference_mode``; a Keras model called eagerly), batch 1 and 32, on the digits MLP (64-128-10)
  and a small CNN (1x28x28, two conv+pool blocks), and ResNet-18 from the zoo at batch 1, exported
  from torch and from TensorFlow; with the export time (export + check + verification) of each.
* int8: dynamic INT8 vs fp32, both in ONNX Runtime, on a 4-layer transformer encoder built from the
  spec (Embedding + MultiHeadAttention + LayerNorm + Dense blocks, d_model 256, 4 heads, FFN 1024,
  sequence 128, vocabulary 8,000): speed ratio, size ratio, and the output change — the weights are
  random, so the "metric" is the share of token predictions that INT8 keeps from fp32. The int8
  format fits this machine's CPU unless ``--int8-target`` names another (avx2, avx512, vnni, arm64).

Each pair is timed in alternating rounds (medians), so noise on a shared machine hits both sides.
``--threads N`` gives every runtime N threads (torch, TensorFlow and ONNX Runtime alike): on a
machine that other work shares, torch's OpenMP threads stall when they outnumber the free cores,
and one thread each is then the fairer comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from llmasos import Dataset, Model, export
from llmasos.adapters import installed_frameworks
from llmasos.cpu import describe
from llmasos.spec import ModelSpec

ROUNDS = 5
THREADS: int | None = None      # --threads; None: each runtime's default (all cores)


def ort_session(path: Path):
    """An ONNX Runtime session on CPU with the benchmark's thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if THREADS:
        options.intra_op_num_threads = THREADS
    return export.load(path, options=options)


def median_ms(calls: dict, seconds: float) -> dict:
    """Median milliseconds per call of each callable, over alternating rounds after a warm-up."""
    for call in calls.values():
        call(), call()
    times = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, call in calls.items():
            deadline = time.perf_counter() + seconds / ROUNDS
            while True:
                start = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - start) * 1e3)
                if time.perf_counter() > deadline and len(times[name]) >= 3:
                    break
    return {name: statistics.median(values) for name, values in times.items()}


def mlp(framework: str) -> Model:
    model = Model(input_dim=64, output_dim=10, framework=framework, name="digits-mlp")
    model.add_layer("Dense", 128, activation="relu").add_layer("Dense", 10, activation="softmax")
    return model.build(seed=0)


def cnn(framework: str) -> Model:
    model = Model(input_shape=(1, 28, 28), output_dim=10, framework=framework, name="small-cnn")
    model.add_layer("Conv2D", 16, kernel_size=3, padding="same", activation="relu").add_layer("MaxPool2D", 2)
    model.add_layer("Conv2D", 32, kernel_size=3, padding="same", activation="relu").add_layer("MaxPool2D", 2)
    model.add_layer("Flatten").add_layer("Dense", 10, activation="softmax")
    return model.build(seed=0)


def resnet18(framework: str) -> Model:
    from llmasos import zoo

    return zoo.load("resnet18", framework=framework, pretrained=False)


def eager_call(model: Model, x: np.ndarray):
    """The framework's own eager forward pass on ``x``, no llmasos in the loop."""
    native = model.backend_model
    if model.framework == "torch":
        import torch

        tensor = torch.from_numpy(x)
        native.eval()

        def run():
            with torch.inference_mode():
                native(tensor)
        return run
    name = model.spec.inputs[0].name
    return lambda: native({name: x}, training=False)


def bench_eager(folder: Path, seconds: float) -> list[str]:
    rows = [f"{'model':<11} {'from':<5} {'export s':>8} {'batch':>5} {'eager ms':>9} {'ORT ms':>8} {'ORT speed-up':>12}"]
    # torch first, all of it: TensorFlow's thread pools, once loaded, compete with torch's.
    # ResNet-18 at batch 1 only: the design's reference point (ORT about 2.4x torch eager).
    for framework in installed_frameworks():
        for make, batches in ((mlp, (1, 32)), (cnn, (1, 32)), (resnet18, (1,))):
            model = make(framework)
            path = folder / f"{model.name}-{framework}.onnx"
            report = export.to_onnx(model, path)
            sess = ort_session(path)
            for batch in batches:
                x = np.random.default_rng(batch).standard_normal((batch, *model.spec.inputs[0].shape)).astype(np.float32)
                feed = {model.spec.inputs[0].name: x}
                ms = median_ms({"eager": eager_call(model, x), "ort": lambda: sess.run(None, feed)}, seconds)
                rows.append(f"{model.name:<11} {framework:<5} {report.seconds:>8.1f} {batch:>5} {ms['eager']:>9.3f} "
                            f"{ms['ort']:>8.3f} {ms['eager'] / ms['ort']:>11.2f}x")
    return rows


def transformer(framework: str, layers: int = 4, d_model: int = 256, heads: int = 4, ffn: int = 1024,
                length: int = 128, vocab: int = 8000) -> Model:
    spec = ModelSpec.sequential((length,), dtype="int64", name="ids")
    spec.add("Embedding", d_model, vocab_size=vocab, name="embed")
    x = "embed"
    for i in range(layers):
        spec.add("MultiHeadAttention", heads, name=f"b{i}.attn", inputs=x)
        spec.add("Add", name=f"b{i}.res1", inputs=[x, f"b{i}.attn"])
        spec.add("LayerNorm", name=f"b{i}.ln1")
        spec.add("Dense", ffn, activation="gelu", name=f"b{i}.ffn1")
        spec.add("Dense", d_model, name=f"b{i}.ffn2")
        spec.add("Add", name=f"b{i}.res2", inputs=[f"b{i}.ln1", f"b{i}.ffn2"])
        spec.add("LayerNorm", name=f"b{i}.ln2")
        x = f"b{i}.ln2"
    spec.add("Dense", 16, name="tags", inputs=x)
    return Model(spec=spec, framework=framework, name="encoder-4x256").build(seed=0)


def bench_int8(folder: Path, seconds: float, target: str = "auto") -> list[str]:
    framework = installed_frameworks()[0]
    model = transformer(framework)
    fp32, int8 = folder / "encoder.onnx", folder / "encoder.int8.onnx"
    report = export.to_onnx(model, fp32)
    started = time.perf_counter()
    export.quantize(fp32, int8, mode="dynamic", target=target)
    chosen = export.info(int8)["llmasos.int8"]
    quantize_s = time.perf_counter() - started
    ids = np.random.default_rng(0).integers(0, 8000, size=(64, 128))
    change = export.compare(fp32, int8, Dataset(ids, mode="test", dtype="int64"), batch_size=32)
    sessions = {"fp32": ort_session(fp32), "int8": ort_session(int8)}
    rows = [f"transformer encoder from {framework}: {model.spec.parameter_count():,} parameters, export "
            f"{report.seconds:.1f} s (max abs diff {report.max_abs_diff:.1e}), dynamic int8 {quantize_s:.1f} s, "
            f"target {chosen['target']} ({'7' if chosen['reduce_range'] else '8'}-bit weights)",
            f"  size: fp32 {fp32.stat().st_size / 2**20:.1f} MiB, int8 {int8.stat().st_size / 2**20:.1f} MiB "
            f"-> {fp32.stat().st_size / int8.stat().st_size:.2f}x smaller",
            f"  output change on 64 x 128 random tokens: same top-1 tag on {change['agreement']:.1%} of tokens, "
            f"max abs diff {change['max_abs_diff']:.3f}",
            f"  {'batch':>5} {'fp32 ms':>9} {'int8 ms':>9} {'int8 speed-up':>13}"]
    for batch in (1, 32):
        feed = {"ids": ids[:batch]}
        ms = median_ms({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, seconds)
        rows.append(f"  {batch:>5} {ms['fp32']:>9.2f} {ms['int8']:>9.2f} {ms['fp32'] / ms['int8']:>12.2f}x")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="eager,int8", help="comma-separated: eager, int8")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per measurement (default 1)")
    parser.add_argument("--threads", type=int, help="threads for every runtime (default: each one's own, all cores)")
    parser.add_argument("--int8-target", default="auto", help="the CPU the int8 file is for (default: this one's)")
    args = parser.parse_args()
    print(f"CPU: {describe()}", flush=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.threads:
        global THREADS
        THREADS = args.threads
        # read when torch and TensorFlow start, which is later: frameworks load on first use
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
            os.environ[variable] = str(args.threads)
    chosen = set(args.only.split(","))
    # other work on the machine skews the ratios (torch's OpenMP threads suffer most): say how much there was
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start; "
          f"threads per runtime: {args.threads or 'default'}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        if "eager" in chosen:
            print("ONNX Runtime fp32 vs the source framework's eager inference", flush=True)
            print("\n".join(bench_eager(Path(folder), args.seconds)), flush=True)
        if "int8" in chosen:
            print("\nONNX Runtime dynamic INT8 vs fp32", flush=True)
            print("\n".join(bench_int8(Path(folder), args.seconds, args.int8_target)), flush=True)


if __name__ == "__main__":
    main()
