"""Speech and translation zoo benchmark: Wav2Vec2 recognition against transformers'
``Wav2Vec2ForCTC``, and Marian greedy translation against ``MarianMTModel.generate``, every
runtime in one table per model.

    python benchmarks/bench_seq2seq.py                                  # both, standard sizes
    python benchmarks/bench_seq2seq.py --model wav2vec2 --seconds 1,4 --repeats 5
    python benchmarks/bench_seq2seq.py --model marian --new-tokens 32 --only torch,onnx

Wav2Vec2 (random weights, wav2vec2-base's config), ms per waveform of 1 and 4 s at 16 kHz:

* transformers: ``Wav2Vec2ForCTC``, the reference;
* llmasos torch (module): the spec-compiled ``nn.Module`` called on a tensor (target <= 1.05);
* llmasos torch (predict) / llmasos tf (predict): through ``Model.predict`` (NumPy in and out);
* onnxruntime cpu: the torch model exported with ``llmasos.export.to_onnx``.

Marian (random weights, opus-mt-en-de's config and vocabulary size): greedy and 4-beam
translation of a batch of 4 source sentences, tokens per second, llmasos in torch, TensorFlow and ONNX Runtime
(its encoder and cached decoder exported) beside transformers' ``generate``; every row must
produce the same tokens. Times are medians of round-robin repeats (see bench_zoo.py).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Callable

import numpy as np

from llmasos.cpu import describe

from bench_zoo import llmasos_runners, measure, print_against_reference


def wav2vec2_runners(folder: str, only: set[str]) -> dict[str, Callable]:
    import torch
    import transformers

    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config()).eval()
    path = os.path.join(folder, "wav2vec2")
    reference.save_pretrained(path)

    def hf(values):
        with torch.inference_mode():
            return reference(torch.from_numpy(values)).logits.numpy()

    return {"transformers": hf, **llmasos_runners("wav2vec2", folder, only, pretrained=path)}


def bench_wav2vec2(folder: str, only: set[str], seconds: list[float], repeats: int) -> None:
    run = wav2vec2_runners(folder, only)
    rng = np.random.default_rng(0)
    print(f"\nWav2Vec2 (wav2vec2-base size, random weights), batch 1: ms per waveform (wall, median of {repeats}); "
          f"ratio vs transformers")
    print(f"{'runtime':26s} {'audio s':>7s} {'ms':>9s} {'ratio':>7s} {'target':>7s} {'max |diff|':>11s}")
    for duration in seconds:
        values = rng.standard_normal((1, int(16000 * duration))).astype(np.float32)
        print_against_reference(run, values, repeats, "audio s", f"{duration:.1f}")


def marian_runners(folder: str, only: set[str], new_tokens: int, beams: int) -> dict[str, Callable]:
    import torch
    import transformers

    from llmasos import export, zoo

    torch.manual_seed(0)
    # opus-mt-en-de's architecture; forced_eos off so both sides simply run greedy to the limit
    config = transformers.MarianConfig(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                                       decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                                       activation_function="swish", max_position_embeddings=512,
                                       scale_embedding=True, forced_eos_token_id=None)
    reference = transformers.MarianMTModel(config).eval()
    path = os.path.join(folder, "marian")
    reference.save_pretrained(path)
    pad = config.pad_token_id

    def hf(batch):
        with torch.inference_mode():
            return reference.generate(torch.from_numpy(batch[0]), attention_mask=torch.from_numpy(batch[1]),
                                      max_new_tokens=new_tokens, do_sample=False, num_beams=beams,
                                      bad_words_ids=[[pad]]).numpy()

    out = {"transformers": hf}
    models = {framework: zoo.load("marian", framework, pretrained=path) for framework in ("torch", "tf")
              if framework in only or (framework == "torch" and "onnx" in only)}
    for framework, model in models.items():
        if framework in only:
            out[f"llmasos {framework}"] = lambda batch, m=model: m.generate(*batch, new_tokens, num_beams=beams)
    if "onnx" in only:
        files = []
        for part in ("encoder", "decoder"):
            files.append(os.path.join(folder, f"marian-{part}.onnx"))
            export.to_onnx(getattr(models["torch"], part)(), files[-1])
        sessions = tuple(export.load(file, providers=["cpu"]) for file in files)
        out["onnxruntime cpu"] = lambda batch: models["torch"].generate(*batch, new_tokens, num_beams=beams,
                                                                        session=sessions)
    return out


def bench_marian(folder: str, only: set[str], length: int, new_tokens: int, beams: int, repeats: int) -> None:
    run = marian_runners(folder, only, new_tokens, beams)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 58000, (4, length))
    mask = np.ones(ids.shape, np.int64)
    mask[1, length // 2:] = 0  # one shorter sentence, so the mask is really used
    batch = (ids, mask)
    want = run["transformers"](batch)
    produced = int((want[:, 1:] != 58100).sum())
    timed = measure(run, batch, repeats, time.perf_counter)
    search = "greedy" if beams == 1 else f"{beams} beams"
    print(f"\nMarian (opus-mt-en-de size, random weights): {search}, 4 sources of {length} tokens, up to {new_tokens} "
          f"new each ({produced} in all) (wall, median of {repeats})")
    print(f"{'runtime':26s} {'tokens/s':>9s} {'ratio':>7s} {'same tokens':>12s}")
    for label, fn in run.items():
        print(f"{label:26s} {produced / timed[label]:9.1f} {timed['transformers'] / timed[label]:7.3f} "
              f"{str(np.array_equal(fn(batch), want)):>12s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wav2vec2,marian", help="comma list: wav2vec2, marian")
    parser.add_argument("--seconds", default="1,4", help="Wav2Vec2 audio durations")
    parser.add_argument("--length", type=int, default=24, help="Marian source length")
    parser.add_argument("--new-tokens", type=int, default=32, help="Marian tokens to generate")
    parser.add_argument("--beams", default="1,4", help="Marian beam counts (1: greedy)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="torch,tf,onnx", help="runtimes besides transformers: torch, tf, onnx")
    args = parser.parse_args()
    print(f"CPU: {describe()}", flush=True)
    only, models = set(args.only.split(",")), set(args.model.split(","))
    with tempfile.TemporaryDirectory() as folder:
        if "wav2vec2" in models:
            bench_wav2vec2(folder, only, [float(s) for s in args.seconds.split(",")], args.repeats)
        for beams in [int(b) for b in args.beams.split(",")] if "marian" in models else []:
            bench_marian(folder, only, args.length, args.new_tokens, beams, args.repeats)


if __name__ == "__main__":
    main()
