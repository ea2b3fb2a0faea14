"""Zoo fine-tuning benchmark (issue 13): per-batch padding against whole-corpus padding, and a
fine-tuning step of llmasos' Marian and Wav2Vec2 (torch) against transformers' own model with a
torch AdamW on the same batches.

    python benchmarks/bench_finetune.py                         # small configs, a few minutes on 2 cores
    python benchmarks/bench_finetune.py --size base --repeats 3 --steps 1  # opus-mt-en-de (74M) / wav2vec2-base (94M)

Padding: a GPT-2 (2 layers, 64 wide) trains one epoch as a causal LM on 96 texts of 4 to 160
tokens (lengths drawn log-uniform, as real corpora are long-tailed), batch 16, three ways: every
batch padded to the corpus's longest text (what text datasets did before), to its own longest
(``Dataset(..., task="causal-lm")``), and with ``bucket=True``. Seconds per epoch, median of
``--repeats`` round-robin rounds with the range, and the speed-up over whole-corpus padding.

Fine-tuning step: milliseconds per optimizer step (forward, CTC or cross-entropy loss, backward,
AdamW), the median over ``--steps`` steps of ``--repeats`` rounds taken in turns; llmasos runs
``model.train`` over a dataset of those batches (its data pipeline included), transformers the
usual loop (``model(**batch, labels=labels).loss.backward(); optimizer.step()``). Dropout is off in
both so they compute the same thing (each prints both models' loss on the first batch before the
timed steps, to show it), from the same random weights; the ratio's target is <= 1.05.
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

SIZES = {
    "small": {"marian": {"d_model": 256, "encoder_layers": 3, "decoder_layers": 3, "encoder_attention_heads": 4,
                         "decoder_attention_heads": 4, "encoder_ffn_dim": 1024, "decoder_ffn_dim": 1024,
                         "vocab_size": 8000},
              "wav2vec2": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
                           "intermediate_size": 1024, "conv_dim": [128] * 7}},
    # opus-mt-en-de and wav2vec2-base (transformers' defaults are the base model's)
    "base": {"marian": {"d_model": 512, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 8,
                        "decoder_attention_heads": 8, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048,
                        "vocab_size": 58101},
             "wav2vec2": {}},
}


def _median_range(values: list[float]) -> str:
    return f"{statistics.median(values):8.3f} ({min(values):.3f}-{max(values):.3f})"


def bench_padding(repeats: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    from llmasos import Dataset, Optimizer, zoo
    from llmasos.data import TextDataset

    class CorpusPadded(TextDataset):
        """Every batch padded to the corpus's longest text, as text datasets did before."""

        def _batch(self, rows, labels):
            x, y = super()._batch(np.arange(len(self)), labels)
            return {name: value[rows] for name, value in x.items()}, y[rows]

    words = [f"w{i}" for i in range(1000)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    rng = np.random.default_rng(0)
    lengths = np.exp(rng.uniform(np.log(4), np.log(160), 96)).astype(int)
    lines = [" ".join(rng.choice(words, n)) for n in lengths]
    gpt = zoo.load("gpt2", "torch", config={"vocab_size": 1000, "n_positions": 256, "n_embd": 64, "n_layer": 2,
                                            "n_head": 4}, tokenizer=tokenizer)
    sets = {"whole-corpus padding": CorpusPadded(lines, text=0, tokenizer=gpt, task="causal-lm"),
            "per-batch padding": Dataset(lines, text=0, tokenizer=gpt, task="causal-lm"),
            "per-batch, bucket=True": Dataset(lines, text=0, tokenizer=gpt, task="causal-lm", bucket=True)}
    tokens = {name: sum(x["input_ids"].size for x, _ in ds.batches(16, shuffle=True, seed=0))
              for name, ds in sets.items()}
    gpt.train(sets["per-batch padding"], Optimizer("AdamW", lr=1e-4), epochs=1, batch_size=16, seed=0)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in sets}
    for round_ in range(repeats):
        for name in (list(sets) if round_ % 2 == 0 else list(reversed(sets))):
            start = time.perf_counter()
            gpt.train(sets[name], epochs=1, batch_size=16, seed=round_)
            seconds[name].append(time.perf_counter() - start)
    print(f"\nPer-batch padding: GPT-2 (2 x 64), {len(lines)} texts of {lengths.min()}-{lengths.max()} tokens "
          f"(median {int(np.median(lengths))}), batch 16, one epoch (torch), median of {repeats} (range)")
    print(f"{'padding':26s} {'tokens fed':>10s} {'s per epoch':>22s} {'speed-up':>9s}")
    whole = statistics.median(seconds["whole-corpus padding"])
    for name in sets:
        print(f"{name:26s} {tokens[name]:10d} {_median_range(seconds[name]):>22s} "
              f"{whole / statistics.median(seconds[name]):8.2f}x")


def _time_steps(steps, repeats: int, count: int) -> dict[str, list[float]]:
    """Milliseconds per step of each of ``steps`` (name -> run(count) doing ``count`` steps), in turns."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for name, run in steps.items():
        run(1)  # warm-up (tracing, allocations)
    for round_ in range(repeats):
        for name in (list(steps) if round_ % 2 == 0 else list(reversed(steps))):
            start = time.perf_counter()
            run(count)
            times[name].append(1000 * (time.perf_counter() - start) / count)
    return times


def _same_loss(model, reference, dataset, batches, batch_size: int) -> str:
    """Both models' loss on the first batch before any step (dropout off): they compute the same thing."""
    import torch

    x, labels = batches[0]
    reference.eval()
    with torch.inference_mode():
        theirs = float(reference(**{k: torch.from_numpy(v) for k, v in x.items()}, labels=torch.from_numpy(labels)).loss)
    ours = model.evaluate(_First(dataset, batch_size), batch_size=batch_size)["loss"]
    return f"first-batch loss: llmasos {ours:.6f}, transformers {theirs:.6f} (difference {abs(ours - theirs):.1e})"


def _reference_steps(model, batches: list[tuple[dict, np.ndarray]]):
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    model.train()

    def run(count: int) -> None:
        for index in range(count):
            x, labels = batches[index % len(batches)]
            loss = model(**{k: torch.from_numpy(v) for k, v in x.items()}, labels=torch.from_numpy(labels)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return run


def _llmasos_steps(model, dataset, batch_size: int):
    from llmasos import Optimizer

    optimizer = Optimizer("AdamW", lr=1e-5, weight_decay=0.01)

    def run(count: int) -> None:
        # one epoch over `count` batches of the dataset, in order, as the reference takes them
        model.train(_First(dataset, count * batch_size), optimizer, epochs=1, batch_size=batch_size, seed=0)
    return run


class _First:
    """The first ``rows`` rows of a dataset, for an epoch of a given number of batches."""

    def __init__(self, dataset, rows: int) -> None:
        self.dataset, self.rows = dataset, rows

    def __getattr__(self, name):
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return self.rows

    def batches(self, batch_size: int, **_):
        for index, batch in enumerate(self.dataset.batches(batch_size)):
            if index * batch_size >= self.rows:
                return
            yield batch


def bench_marian(folder: str, size: str, repeats: int, steps: int) -> None:
    import pandas as pd
    import torch
    import transformers

    from llmasos import Dataset, zoo

    options = SIZES[size]["marian"]
    vocab = options["vocab_size"]
    config = transformers.MarianConfig(**options, max_position_embeddings=512, scale_embedding=True,
                                       activation_function="swish", pad_token_id=vocab - 1,
                                       decoder_start_token_id=vocab - 1, eos_token_id=0, dropout=0.0)
    torch.manual_seed(0)
    path = os.path.join(folder, "marian")
    transformers.MarianMTModel(config).save_pretrained(path)
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = [f"w{i}" for i in range(vocab)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="w1"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    rng = np.random.default_rng(0)
    batch_size = 8
    pairs = pd.DataFrame({"en": [" ".join(rng.choice(words[1:-1], rng.integers(16, 32))) for _ in range(64)],
                          "de": [" ".join(rng.choice(words[1:-1], rng.integers(16, 32))) for _ in range(64)]})
    mt = zoo.load("marian", "torch", pretrained=path, tokenizer=tokenizer)
    dataset = Dataset(pairs, text="en", target_text="de", tokenizer=mt, mode="test")
    batches = list(dataset.batches(batch_size))
    reference = transformers.MarianMTModel.from_pretrained(path)
    agreement = _same_loss(mt, reference, dataset, batches, batch_size)
    times = _time_steps({"transformers + torch AdamW": _reference_steps(reference, batches),
                         "llmasos torch (train)": _llmasos_steps(mt, dataset, batch_size)}, repeats, steps)
    _print_steps(f"Marian ({size}: d_model {options['d_model']}, {options['encoder_layers']}+"
                 f"{options['decoder_layers']} layers, vocab {vocab}, {_millions(reference)}M parameters), batch "
                 f"{batch_size} x 16-32 tokens; {agreement}", times)


def bench_wav2vec2(folder: str, size: str, repeats: int, steps: int) -> None:
    import pandas as pd
    import torch
    import transformers
    import wave

    from llmasos import Dataset, zoo

    options = SIZES[size]["wav2vec2"]
    config = transformers.Wav2Vec2Config(**options, ctc_loss_reduction="mean", hidden_dropout=0.0,
                                         activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
                                         final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0)
    torch.manual_seed(0)
    path = os.path.join(folder, "wav2vec2")
    transformers.Wav2Vec2ForCTC(config).save_pretrained(path)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
    with open(os.path.join(path, "vocab.json"), "w") as file:
        json.dump({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate(letters)}},
                  file)
    rng = np.random.default_rng(0)
    batch_size, rows = 4, []
    for index in range(16):
        clip = os.path.join(folder, f"clip{index}.wav")
        with wave.open(clip, "wb") as out:
            out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
            out.writeframes((0.1 * rng.standard_normal(int(rng.uniform(1.5, 2.5) * 16000)) * 32767)
                            .astype("<i2").tobytes())
        rows.append((clip, " ".join("".join(rng.choice(list(letters[:-1]), 5)) for _ in range(4))))
    asr = zoo.load("wav2vec2", "torch", pretrained=path, freeze="feature_extractor")
    dataset = Dataset(pd.DataFrame(rows, columns=["path", "transcript"]), audio="path", text="transcript",
                      tokenizer=asr, mode="test")
    batches = list(dataset.batches(batch_size))
    reference = transformers.Wav2Vec2ForCTC.from_pretrained(path)
    reference.freeze_feature_encoder()
    agreement = _same_loss(asr, reference, dataset, batches, batch_size)
    times = _time_steps({"transformers + torch AdamW": _reference_steps(reference, batches),
                         "llmasos torch (train)": _llmasos_steps(asr, dataset, batch_size)}, repeats, steps)
    _print_steps(f"Wav2Vec2 ({size}: hidden {config.hidden_size}, {config.num_hidden_layers} layers, conv "
                 f"{config.conv_dim[0]}, {_millions(reference)}M parameters), batch {batch_size} x 1.5-2.5 s, feature "
                 f"extractor frozen; {agreement}", times)


def _millions(module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.1f}"


def _print_steps(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}: ms per optimizer step, median (range) of the rounds")
    reference = statistics.median(times["transformers + torch AdamW"])
    for name, values in times.items():
        print(f"{name:28s} {_median_range(values):>26s} {statistics.median(values) / reference:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="padding,marian,wav2vec2")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per timed round")
    args = parser.parse_args()
    import torch

    print(f"CPU: {describe()}; torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores at the start", flush=True)
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as folder:
        if "padding" in only:
            bench_padding(args.repeats)
        if "marian" in only:
            bench_marian(folder, args.size, args.repeats, args.steps)
        if "wav2vec2" in only:
            bench_wav2vec2(folder, args.size, args.repeats, args.steps)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
