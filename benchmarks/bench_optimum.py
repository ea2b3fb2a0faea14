"""BERT in ONNX Runtime: llmasos' export against Hugging Face Optimum's, the same random weights.

    python benchmarks/bench_optimum.py                                   # batch 1 and 8, sequence 128
    python benchmarks/bench_optimum.py --optimum-python /path/to/venv/bin/python

Four files of one random BERT-base (``transformers.BertModel``, seed 0, saved as a Hugging Face
folder): ``export.to_onnx`` of ``zoo.load("bert", pretrained=folder)``; that file through
``export.optimize`` (ONNX Runtime's transformer fusions); Optimum's ``feature-extraction`` export;
and Optimum's O2 optimisation of it (the same fusions). Each runs in a default ONNX Runtime CPU
session; the files take turns (round-robin, the order reversed every other round); the table gives
the median ms per batch with its spread (min-max), the median of the per-round ratios to Optimum's
export with theirs, and the max abs difference from transformers' own output.

``--cpu-time`` runs each session on one thread and times the CPU each run takes
(``time.thread_time``), which other processes on a shared machine do not inflate as they do
wall-clock time: the graphs' cost, compared.

Optimum is optional: where ``optimum.exporters.onnx`` does not import (optimum-onnx 0.1 wants
transformers < 4.58), ``--optimum-python`` names an interpreter that has it (a venv with
``pip install optimum-onnx`` beside torch); without either, the Optimum rows are skipped with a
message. Masks pad on the right, as Optimum's O2 mask format assumes.
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

BERT_BASE = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "max_position_embeddings": 512}

_OPTIMUM = """
import sys
from optimum.exporters.onnx import main_export
from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer
folder, out, out_o2 = sys.argv[1:4]
main_export(folder, output=out, task="feature-extraction")
ORTOptimizer.from_pretrained(out).optimize(save_dir=out_o2, optimization_config=AutoOptimizationConfig.O2())
"""


def optimum_files(folder: str, python: str | None) -> dict[str, str]:
    """Optimum's export and its O2 file, made by this interpreter or ``python``; {} without Optimum."""
    if python is None:
        try:
            import optimum.exporters.onnx  # noqa: F401
        except ImportError as exc:
            print(f"Optimum rows skipped: {exc} (pip install optimum-onnx, or --optimum-python)", file=sys.stderr)
            return {}
        python = sys.executable
    out, out_o2 = os.path.join(folder, "optimum"), os.path.join(folder, "optimum-o2")
    started = time.perf_counter()
    done = subprocess.run([python, "-c", _OPTIMUM, os.path.join(folder, "hf"), out, out_o2], capture_output=True,
                          text=True)
    if done.returncode != 0:
        print(f"Optimum rows skipped: its export failed: {done.stderr.strip()[-1500:]}", file=sys.stderr)
        return {}
    print(f"Optimum export + O2: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    o2 = next(os.path.join(out_o2, name) for name in os.listdir(out_o2) if name.endswith(".onnx"))
    return {"Optimum export": os.path.join(out, "model.onnx"), "Optimum O2": o2}


def llmasos_files(folder: str) -> dict[str, str]:
    from llmasos import export, zoo

    model = zoo.load("bert", "torch", pretrained=os.path.join(folder, "hf"))
    plain, fused = os.path.join(folder, "llmasos.onnx"), os.path.join(folder, "llmasos.opt.onnx")
    started = time.perf_counter()
    export.to_onnx(model, plain)
    print(f"llmasos export: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    report = export.optimize(plain, fused)
    print(report, file=sys.stderr)
    return {"llmasos export": plain, f"llmasos optimize ({report.method})": fused}


def feeds(batches: list[int], length: int) -> dict[int, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = {}
    for batch in batches:
        mask = np.ones((batch, length), np.int64)
        mask[0, length // 2:] = 0  # one sequence padded on the right
        out[batch] = {"input_ids": rng.integers(0, BERT_BASE["vocab_size"], (batch, length)), "attention_mask": mask,
                      "token_type_ids": np.zeros((batch, length), np.int64)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--optimum-python", help="an interpreter with optimum-onnx installed")
    parser.add_argument("--cpu-time", action="store_true", help="one thread per session, CPU time per run")
    args = parser.parse_args()
    print(f"CPU: {describe()}; load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)

    import onnxruntime as ort
    import torch
    import transformers

    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        reference = transformers.BertModel(transformers.BertConfig(**BERT_BASE)).eval()
        reference.save_pretrained(os.path.join(folder, "hf"))
        files = {**llmasos_files(folder), **optimum_files(folder, args.optimum_python)}
        options = ort.SessionOptions()
        if args.cpu_time:
            options.intra_op_num_threads = 1
        clock = time.thread_time if args.cpu_time else time.perf_counter
        sessions = {label: ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                    for label, path in files.items()}
        inputs = feeds([int(b) for b in args.batches.split(",")], args.length)
        what = "CPU ms per batch, one thread" if args.cpu_time else "ms per batch"
        print(f"\nBERT-base (random weights), sequence {args.length}, ONNX Runtime {ort.__version__} CPU: {what}, "
              f"median [min-max] of {args.repeats} round-robin repeats")
        print(f"{'file':58s} {'batch':>5s} {'median':>9s} {'spread':>17s} {'vs Optimum':>22s} {'max |diff|':>11s}")
        for batch, feed in inputs.items():
            with torch.inference_mode():
                want = reference(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state.numpy()
            diffs, times = {}, {label: [] for label in sessions}
            for label, sess in sessions.items():
                names = {i.name for i in sess.get_inputs()}
                got = sess.run(None, {k: v for k, v in feed.items() if k in names})[0]
                diffs[label] = float(np.abs(got - want).max())
            for round_ in range(args.repeats):
                for label in list(sessions)[::1 if round_ % 2 == 0 else -1]:
                    sess = sessions[label]
                    names = {i.name for i in sess.get_inputs()}
                    started = clock()
                    sess.run(None, {k: v for k, v in feed.items() if k in names})
                    times[label].append((clock() - started) * 1e3)
            base = times.get("Optimum export")
            for label, found in times.items():
                median = statistics.median(found)
                ratios = [t / b for t, b in zip(found, base)] if base else None
                ratio = (f"{statistics.median(ratios):.3f} [{min(ratios):.2f}-{max(ratios):.2f}]" if ratios else "-")
                print(f"{label:58s} {batch:5d} {median:9.1f} {min(found):8.1f}-{max(found):<8.1f} {ratio:>22s} "
                      f"{diffs[label]:11.2e}")
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
