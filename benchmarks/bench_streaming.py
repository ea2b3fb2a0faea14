"""Streaming speech-to-text benchmark: real-time factor and end-of-utterance latency of
``asr.stream`` at several window settings, torch / TensorFlow / ONNX Runtime side by side.

    python benchmarks/bench_streaming.py                              # wav2vec2-base size, 8 s of audio
    python benchmarks/bench_streaming.py --seconds 4 --repeats 2 --only torch,onnx
    python benchmarks/bench_streaming.py --quick                      # a tiny model: checks the script runs

The model has wav2vec2-base's size and random weights, with its blank favoured (an lm_head bias)
so that it pauses, as a trained model does between utterances, and finals come. The audio is fed
as a microphone gives it, 20 ms at a time.

* real-time factor (RTF): compute time of every ``feed`` and ``finish`` over the audio's duration;
  under 1 keeps up with live audio (the windows overlap: each second of audio runs
  ``chunk_s / (chunk_s - left_s - right_s)`` seconds of model);
* latency: for each final, from the end of its utterance (its last letter's frame) to the moment
  the final is out, with audio arriving in real time (simulated on a clock): the audio that had to
  come after the utterance before the final could be written (the ``endpoint_s`` pause, the right
  context, the rest of the window), plus compute, plus any backlog when RTF > 1.

Each setting runs every runtime in turn, ``--repeats`` rounds; medians with min-max over rounds
(RTF) or over all finals (latency). The CPU is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np

from llmasos.cpu import describe

PIECE_S = 0.02
VOCABULARY = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate("ETAOINSHRDLUCMWFGYPBVKJXQZ'")}}
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "conv_dim": [16, 16, 16], "conv_kernel": [10, 3, 3], "conv_stride": [5, 2, 2], "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4}


def make_folder(folder: str, quick: bool, speech: np.ndarray, blank_share: float) -> str:
    """A Hugging Face folder: a random Wav2Vec2ForCTC whose blank wins ``blank_share`` of the frames."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(vocab_size=len(VOCABULARY), **(TINY if quick else {}))
    model = transformers.Wav2Vec2ForCTC(config).eval()
    with torch.inference_mode():
        logits = model(torch.from_numpy(speech[None, :16000 * 4])).logits[0].numpy()
        margin = np.delete(logits, 0, axis=1).max(axis=1) - logits[:, 0]
        model.lm_head.bias[0] += float(np.quantile(margin, blank_share))
    path = os.path.join(folder, "asr")
    model.save_pretrained(path)
    with open(os.path.join(path, "vocab.json"), "w") as file:
        json.dump(VOCABULARY, file)
    return path


def set_threads(threads: int, only: set[str]) -> None:
    """One setting for every runtime (ONNX Runtime's is set on its session). On a shared, loaded
    machine a runtime's default thread pool can wait for busy cores on every op: one thread
    each is the steady, fair comparison."""
    if not threads:
        return
    if only & {"torch", "onnx"}:
        import torch

        torch.set_num_threads(threads)
    if "tf" in only:
        import tensorflow as tf  # before TensorFlow runs anything, or the settings are refused

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def run_stream(stream, speech: np.ndarray, rate: int, clock=time.perf_counter) -> tuple[float, list[float]]:
    """Feed ``speech`` 20 ms at a time; the compute seconds and each final's latency in seconds.

    Live audio is simulated on a clock: a piece arrives when its last sample has been spoken and
    is processed once it has arrived and the pieces before it are done, so a stream that cannot
    keep up (RTF > 1) falls behind and its latencies grow, as they would."""
    piece, compute, latencies, now = int(PIECE_S * rate), 0.0, [], 0.0
    for start in range(0, len(speech) + piece, piece):
        last = start >= len(speech)
        began = clock()
        events = stream.finish() if last else stream.feed(speech[start:start + piece])
        spent = clock() - began
        compute += spent
        arrived = min(start + piece, len(speech)) / rate  # when the piece's last sample was spoken
        now = max(now, arrived) + spent                   # when the events of this piece are out
        latencies += [now - e["end"] for e in events if "final" in e and not last]
        if last:
            break
    return compute, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="audio length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="torch,tf,onnx", help="runtimes, comma-separated")
    parser.add_argument("--settings", default="0.5/0.1/0.1,1/0.25/0.25,1/0.5/0.25,2/0.5/0.5",
                        help="chunk_s/left_s/right_s, comma-separated")
    parser.add_argument("--endpoint-s", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of every runtime (0: each one's default)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="count the process's CPU time as compute (with one thread each: what a core of "
                             "its own would take; steadier on a busy shared machine than wall time)")
    parser.add_argument("--quick", action="store_true", help="a tiny model, 2 s, one round")
    args = parser.parse_args()
    if args.quick:  # the tiny model's frames are 1.25 ms: a pause of 10 ms is 8 of them
        args.seconds, args.repeats, args.endpoint_s = 2.0, 1, 0.01

    from llmasos import export, zoo

    rate, only = 16000, set(args.only.split(","))
    clock = time.process_time if args.cpu_time else time.perf_counter
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(int(args.seconds * rate))).astype(np.float32)
    settings = [tuple(float(v) for v in s.split("/")) for s in args.settings.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        path = make_folder(folder, args.quick, speech, blank_share=0.97)
        # after transformers' Wav2Vec2 is imported: importing it (triton) after TensorFlow crashes
        set_threads(args.threads, only)
        models = {}
        if only & {"torch", "onnx"}:
            models["torch"] = zoo.load("wav2vec2", "torch", pretrained=path)
        if "tf" in only:
            models["tf"] = zoo.load("wav2vec2", "tf", pretrained=path)
        runtimes = {name: (model, None) for name, model in models.items() if name in only}
        if "onnx" in only:
            onnx_path = os.path.join(folder, "asr.onnx")
            export.to_onnx(models["torch"], onnx_path)
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = args.threads
            runtimes["onnxruntime cpu"] = (models["torch"], export.load(onnx_path, providers=["cpu"], options=options))
        for model, session in runtimes.values():  # warm-up: first calls build kernels and caches
            run_stream(model.stream(session=session), speech[:rate * 2], rate)

        print(f"CPU: {describe()}; load average {os.getloadavg()[0]:.1f}; threads per runtime: "
              f"{args.threads or 'default'}; compute counted in {'CPU' if args.cpu_time else 'wall'} time")
        print(f"Streaming Wav2Vec2 ({'tiny' if args.quick else 'wav2vec2-base size'}, random weights), "
              f"{args.seconds:g} s of audio fed {1000 * PIECE_S:.0f} ms at a time, endpoint_s={args.endpoint_s}; "
              f"medians of {args.repeats} round(s), [min-max]")
        print(f"{'chunk/left/right s':>18s} {'runtime':18s} {'RTF':>18s} {'latency s (finals)':>26s}")
        for chunk_s, left_s, right_s in settings:
            rtf = {name: [] for name in runtimes}
            latency = {name: [] for name in runtimes}
            texts = {}
            for _ in range(args.repeats):
                for name, (model, session) in runtimes.items():
                    stream = model.stream(chunk_s, left_s, right_s, session=session, endpoint_s=args.endpoint_s)
                    compute, finals = run_stream(stream, speech, rate, clock)
                    rtf[name].append(compute / args.seconds)
                    latency[name] += finals
                    texts[name] = stream.text
            same = len(set(texts.values())) == 1
            for name in runtimes:
                lat = latency[name]
                lat_text = (f"{statistics.median(lat):6.3f} [{min(lat):.3f}-{max(lat):.3f}] ({len(lat)})" if lat
                            else "no final")
                print(f"{f'{chunk_s:g}/{left_s:g}/{right_s:g}':>18s} {name:18s} "
                      f"{statistics.median(rtf[name]):6.3f} [{min(rtf[name]):.3f}-{max(rtf[name]):.3f}] "
                      f"{lat_text:>26s}")
            print(f"{'':18s} same text in every runtime: {same}")


if __name__ == "__main__":
    main()
