"""Serving throughput and latency over HTTP against in-process ONNX Runtime on the same model.

    python benchmarks/bench_serve.py                       # digits MLP and ResNet-18
    python benchmarks/bench_serve.py --models resnet18 --concurrency 1,8 --seconds 3 --repeats 7

For each model and concurrency (1, 8, 32) it measures in-process ``InferenceSession.run`` from
that many threads (the limit), then the Deployer over loopback HTTP without and with dynamic
batching. Every request carries one sample (batch 1) in the binary tensor extension. The load
generator is a separate process (asyncio, raw keep-alive HTTP/1.1), bounded by a request count and a time limit.
Both sides open the model with the server's session options (``llmasos.serve.version.session_options``:
worker threads that do not spin), so the ratio is what HTTP costs, on a machine the load
generator shares with the server.

A shared machine's speed changes from one second to the next, so the measurements are repeated
in rounds (``--repeats``): each round measures in-process ONNX Runtime and every HTTP setup, the
in-process one first in even rounds and last in odd ones (the servers stay up between rounds),
and a round's ratio is its HTTP throughput over the same round's in-process throughput. The
table gives medians over the rounds and the ratios' spread
(min-max); the load average is printed before and after. Beside throughput it gives CPU per
request (the whole process's for in-process ORT; the server process's, warm-up requests counted,
plus the load generator's for HTTP): on a shared machine the scheduler hands a process CPU by its
number of runnable threads, so 8 threads calling ONNX Runtime at once out-draw one batch at a time
under load, while CPU per request is what the work costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from llmasos.cpu import describe

HEADER = "Inference-Header-Content-Length"


def mlp_onnx(folder: Path) -> Path:
    """The digits MLP, 64 -> 128 -> 10 with softmax, random weights, dynamic batch."""
    import onnx
    import onnx.helper as h
    from onnx import TensorProto, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)
               for name, shape in (("w1", (64, 128)), ("b1", (128,)), ("w2", (128, 10)), ("b2", (10,)))]
    nodes = [h.make_node("Gemm", ["input", "w1", "b1"], ["h"]), h.make_node("Relu", ["h"], ["r"]),
             h.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
             h.make_node("Softmax", ["logits"], ["output"], axis=-1)]
    graph = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
                         [h.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])], weights)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    model.ir_version = 9
    path = folder / "mlp.onnx"
    onnx.save(model, str(path))
    return path


def resnet18_onnx(folder: Path) -> Path:
    """torchvision's ResNet-18 with random weights (nothing downloaded), dynamo export, dynamic batch."""
    import torch
    import torchvision

    module = torchvision.models.resnet18(weights=None).eval()
    path = folder / "resnet18.onnx"
    torch.onnx.export(module, (torch.zeros(2, 3, 224, 224),), str(path), dynamo=True, external_data=False,
                      verbose=False, input_names=["input"], output_names=["output"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    return path


MODELS = {"mlp": (mlp_onnx, (64,)), "resnet18": (resnet18_onnx, (3, 224, 224))}


def binary_request(name: str, x: np.ndarray) -> tuple[bytes, int]:
    header = json.dumps({"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + x.tobytes(), len(header)


def summary(latencies: list[float], seconds: float, cpu_s: float) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    return {"requests": len(ms), "throughput": len(ms) / seconds, "cpu_ms": cpu_s * 1000 / len(ms),
            "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def _cpu_s() -> float:
    """CPU seconds this process has used, all its threads (the servers' included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def in_process(session, x: np.ndarray, concurrency: int, requests: int, seconds: float) -> dict:
    """``concurrency`` threads calling one session, batch 1 each, until either bound is reached."""
    feeds = {session.get_inputs()[0].name: x}
    for _ in range(5):
        session.run(None, feeds)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    def work() -> None:
        while len(latencies) < requests and time.perf_counter() < deadline:
            started = time.perf_counter()
            session.run(None, feeds)
            latencies.append(time.perf_counter() - started)

    started, cpu = time.perf_counter(), _cpu_s()
    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summary(latencies, time.perf_counter() - started, _cpu_s() - cpu)


async def _http_worker(host: str, port: int, request: bytes, latencies: list[float], requests: int,
                       deadline: float) -> None:
    """One keep-alive HTTP/1.1 connection sending ``request`` in a loop (a lean client: httpx
    would cost as much CPU as the server on this 2-core machine)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while len(latencies) < requests and time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _load(url: str, body: bytes, header_length: int, concurrency: int, requests: int,
                seconds: float) -> dict:
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.rpartition(":")
    request = (f"POST /{path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/octet-stream\r\n"
               f"{HEADER}: {header_length}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    warm: list[float] = []
    await asyncio.gather(*(_http_worker(host, int(port), request, warm, concurrency, time.perf_counter() + seconds)
                           for _ in range(concurrency)))
    latencies: list[float] = []
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(_http_worker(host, int(port), request, latencies, requests, started + seconds)
                           for _ in range(concurrency)))
    # the client's CPU per request; "sent" lets the server's side count the warm-up requests too
    return {**summary(latencies, time.perf_counter() - started, time.process_time() - cpu),
            "sent": len(warm) + len(latencies)}


def over_http(url: str, x: np.ndarray, concurrency: int, requests: int, seconds: float) -> dict:
    """Run the load generator in a separate process against ``url`` (an infer endpoint)."""
    body, header_length = binary_request("input", x)
    with tempfile.NamedTemporaryFile(suffix=".bin") as file:
        file.write(body)
        file.flush()
        cpu = _cpu_s()
        done = subprocess.run([sys.executable, __file__, "--loadgen", url, file.name, str(header_length),
                               str(concurrency), str(requests), str(seconds)],
                              capture_output=True, text=True, timeout=seconds + 120, check=True)
        server_cpu_s = _cpu_s() - cpu
    result = json.loads(done.stdout)
    # CPU per request: the server's (this process) and the load generator's together
    return {**result, "cpu_ms": result["cpu_ms"] + server_cpu_s * 1000 / result["sent"]}


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp,resnet18")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=3.0, help="time limit per measurement")
    parser.add_argument("--requests", type=int, default=3000, help="request limit per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of measurements (medians and spread)")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--batch-timeouts-ms", default="0,2",
                        help="batching waits to try: 0 merges only what queued during the previous run")
    args = parser.parse_args()
    print(f"CPU: {describe()}; load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)

    import onnxruntime as ort

    from llmasos.serve import Deployer
    from llmasos.serve.version import session_options

    rows = []
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as servers:
        for model in args.models.split(","):
            build, shape = MODELS[model]
            path = build(Path(folder))
            x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
            # the server's own session options, so the ratio measures HTTP and nothing else
            session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
            setups = [("HTTP", 0, 0.0)] + [(f"HTTP, batching {args.max_batch}, wait {wait:g} ms", args.max_batch, wait)
                                           for wait in map(float, args.batch_timeouts_ms.split(","))]
            urls = {label: servers.enter_context(Deployer(path, port=0, name=model, max_batch=max_batch,
                                                          batch_timeout_ms=wait, poll_s=0)).url
                    for label, max_batch, wait in setups}
            for concurrency in map(int, args.concurrency.split(",")):
                bounds = (concurrency, args.requests, args.seconds)
                found: dict[str, list[dict]] = {"in-process ORT": [], **{label: [] for label in urls}}
                for round_ in range(args.repeats):
                    # in-process first in even rounds, last in odd ones: neither side always follows the other
                    order = ["in-process ORT", *urls] if round_ % 2 == 0 else [*urls, "in-process ORT"]
                    results = {label: in_process(session, x, *bounds) if label not in urls
                               else over_http(f"{urls[label]}/v2/models/{model}/infer", x, *bounds) for label in order}
                    limit = results["in-process ORT"]
                    for label, result in results.items():
                        found[label].append({**result, "ratio": result["throughput"] / limit["throughput"],
                                             "efficiency": limit["cpu_ms"] / result["cpu_ms"]})
                for label, runs in found.items():
                    rows.append((model, concurrency, label, runs))
                    print(f"{model} c={concurrency} {label}: ratio {_spread([r['ratio'] for r in runs])}, "
                          f"CPU {_spread([r['efficiency'] for r in runs])}", file=sys.stderr)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; medians of {args.repeats} rounds; "
          "throughput: the round's HTTP throughput over its in-process throughput; CPU: in-process CPU per request "
          "over HTTP's (server and load generator), which other processes' load does not skew; median [min-max]")
    print("| model | concurrency | path | req/s | p50 ms | p99 ms | CPU ms/request | throughput vs in-process | "
          "CPU per request, in-process over HTTP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, concurrency, label, runs in rows:
        median = lambda key: statistics.median(r[key] for r in runs)
        base = label.startswith("in-process")
        ratio = "1" if base else _spread([r["ratio"] for r in runs])
        efficiency = "1" if base else _spread([r["efficiency"] for r in runs])
        print(f"| {model} | {concurrency} | {label} | {median('throughput'):.0f} | {median('p50'):.2f} | "
              f"{median('p99'):.2f} | {median('cpu_ms'):.2f} | {ratio} | {efficiency} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--loadgen"]:
        url, body_file, header_length, concurrency, requests, seconds = sys.argv[2:]
        print(json.dumps(asyncio.run(_load(url, Path(body_file).read_bytes(), int(header_length),
                                           int(concurrency), int(requests), float(seconds)))))
    else:
        main()
