"""GPT-2 (Radford et al., 2019) of any size, as Hugging Face's ``GPT2LMHeadModel`` computes it,
in the neutral spec, with greedy or sampled generation over a key/value cache.

Layer names follow Hugging Face's modules (``wte``, ``wpe``, ``h.0.ln_1``, ``h.0.attn.c_proj``,
``h.0.mlp.c_fc``, ``ln_f``). Its fused ``c_attn`` (a Conv1D holding query, key and value side by
side, ``[in, 3 * out]``) becomes three Dense layers ``h.i.attn.query/key/value``, and the LM head
is an ``Unembedding`` tied to ``wte``, so the matrix is stored and trained once. The model maps
``input_ids`` ``(batch, length)`` to ``logits`` ``(batch, length, vocab)``.

**The key/value cache is a second spec** with the same weights (:func:`gpt2` with
``cache=True``, :meth:`GPT2.decoder`): it also takes ``past_key_i``/``past_value_i``
``(batch, past, n_embd)`` per layer, concatenates them before the new keys and values (its
outputs ``present_key_i``/``present_value_i``), starts positions after the past and returns only
the last position's ``logits`` ``(batch, vocab)``. It is an ordinary spec, so it compiles in
torch and TensorFlow and exports to ONNX with its past/present tensors; :mod:`.generation` runs
either model, in a framework or in ONNX Runtime, with the same NumPy loop.

>>> spec = gpt2(GPT2Config(vocab_size=100, n_positions=64, n_embd=32, n_layer=2, n_head=4), cache=True)
>>> spec.outputs
['logits', 'present_key_0', 'present_value_0', 'present_key_1', 'present_value_1']
>>> spec.shapes()["logits"], spec.shapes()["present_key_1"]
((100,), (None, 32))

::

    gpt = zoo.load("gpt2", framework="torch", pretrained="path/to/gpt2-folder")
    gpt.generate("Hello", max_new_tokens=20)                     # greedy, with the cache
    gpt.generate("Hello", do_sample=True, top_p=0.9, seed=0)
    export.to_onnx(gpt.decoder(), "decoder.onnx")
    gpt.generate("Hello", session="decoder.onnx")                # the same tokens from ONNX Runtime
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from ..errors import DataError, WeightsError
from ..model import Model
from ..spec import ModelSpec
from . import generation
from .registry import register
from .text import HFConfig, TextModel, activation

GENERATION = "text-generation"


@dataclasses.dataclass(frozen=True)
class GPT2Config(HFConfig):
    """``GPT2Config``'s architecture settings; the defaults are GPT-2 small's (124M)."""

    FIXED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
             "reorder_and_upcast_attn": False, "add_cross_attention": False}

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # 4 * n_embd when None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256


def _block(spec: ModelSpec, index: int, source: str, config: GPT2Config, cache: bool) -> str:
    """Pre-LayerNorm causal self-attention and MLP, each added back to the residual stream."""
    prefix = f"h.{index}"
    spec.add("LayerNorm", eps=config.layer_norm_epsilon, name=f"{prefix}.ln_1", inputs=source)
    for role in ("query", "key", "value"):
        spec.add("Dense", config.n_embd, name=f"{prefix}.attn.{role}", inputs=f"{prefix}.ln_1")
    key, value = f"{prefix}.attn.key", f"{prefix}.attn.value"
    if cache:
        spec.add("Concatenate", axis=1, name=f"present_key_{index}", inputs=[f"past_key_{index}", key])
        spec.add("Concatenate", axis=1, name=f"present_value_{index}", inputs=[f"past_value_{index}", value])
        key, value = f"present_key_{index}", f"present_value_{index}"
    spec.add("Attention", config.n_head, causal=True, dropout=config.attn_pdrop, name=f"{prefix}.attn.heads",
             inputs=[f"{prefix}.attn.query", key, value])
    spec.add("Dense", config.n_embd, name=f"{prefix}.attn.c_proj")
    spec.add("Dropout", config.resid_pdrop, name=f"{prefix}.attn.dropout")
    spec.add("Add", name=f"{prefix}.attn.residual", inputs=[f"{prefix}.attn.dropout", source])
    spec.add("LayerNorm", eps=config.layer_norm_epsilon, name=f"{prefix}.ln_2")
    spec.add("Dense", config.n_inner or 4 * config.n_embd, name=f"{prefix}.mlp.c_fc",
             activation=activation(config.activation_function, "activation_function"))
    spec.add("Dense", config.n_embd, name=f"{prefix}.mlp.c_proj")
    spec.add("Dropout", config.resid_pdrop, name=f"{prefix}.mlp.dropout")
    spec.add("Add", name=f"{prefix}.mlp.residual", inputs=[f"{prefix}.mlp.dropout", f"{prefix}.attn.residual"])
    return f"{prefix}.mlp.residual"


def gpt2(config: GPT2Config = GPT2Config(), task: str = GENERATION, num_labels: int = 0, logits: bool = True,
         cache: bool = False) -> ModelSpec:
    """GPT-2's spec: ``logits`` for every position, or with ``cache`` the incremental decoder.

    The LM head always gives logits (as transformers' does); ``task``, ``num_labels`` and
    ``logits`` are the zoo's common builder arguments and change nothing here.
    """
    spec = ModelSpec()
    spec.add_input("input_ids", (None,), "int64", axes=["sequence_length"])
    presents = []
    if cache:
        for index in range(config.n_layer):
            spec.add_input(f"past_key_{index}", (None, config.n_embd), axes=["past_sequence_length"])
            spec.add_input(f"past_value_{index}", (None, config.n_embd), axes=["past_sequence_length"])
            presents += [f"present_key_{index}", f"present_value_{index}"]
    spec.add("Embedding", config.n_embd, vocab_size=config.vocab_size, name="wte", inputs="input_ids")
    spec.add("PositionEmbedding", config.n_positions, name="wpe", inputs=["wte", "past_key_0"] if cache else "wte")
    node = spec.add("Dropout", config.embd_pdrop, name="drop").last
    for index in range(config.n_layer):
        node = _block(spec, index, node, config, cache)
    spec.add("LayerNorm", eps=config.layer_norm_epsilon, name="ln_f", inputs=node)
    if cache:
        spec.add("TakeToken", -1, name="last")  # the next token needs only the last position's scores
    spec.add("Unembedding", embedding="wte", name="logits")
    return spec.set_outputs(["logits", *presents])


def hf_state_dict(state: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    """A Hugging Face GPT-2 checkpoint with this spec's keys and torch Linear layouts: no
    ``transformer.`` prefix, Conv1D weights ``[in, out]`` transposed, ``c_attn`` split into
    query/key/value, the tied ``lm_head`` and old causal-mask buffers dropped."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("transformer.")
        layer, _, param = key.rpartition(".")
        if key == "lm_head.weight":
            if "wte.weight" in out and not np.array_equal(value, out["wte.weight"]):
                raise WeightsError("the checkpoint's lm_head.weight differs from transformer.wte.weight; llmasos' "
                                   "GPT-2 ties them, as GPT-2 does")
        elif layer.endswith(".attn") and param in ("bias", "masked_bias"):
            continue  # causal-mask buffers of old checkpoints
        elif layer.endswith(".attn.c_attn"):
            if value.shape[-1] % 3:
                raise WeightsError(f"{key}: shape {value.shape} does not hold query, key and value side by side")
            for role, part in zip(("query", "key", "value"), np.split(value, 3, axis=-1)):
                out[f"{layer[:-len('c_attn')]}{role}.{param}"] = part.T if param == "weight" else part
        elif layer.endswith(("c_proj", "c_fc")) and param == "weight":
            out[key] = value.T  # Conv1D [in, out] -> Linear [out, in]
        else:
            out[key] = value
    return out


class GPT2(TextModel):
    """A zoo GPT-2: a :class:`~llmasos.model.Model` with its config, tokenizer and :meth:`generate`."""

    config_class = GPT2Config
    model_types = ("gpt2",)
    tasks = (GENERATION,)
    hf_repo = "openai-community/gpt2"
    positions = "n_positions"
    build_spec = staticmethod(gpt2)
    # GPT2LMHeadModel(labels=...)'s loss: position t's logits against token t + 1
    default_loss = "sequence_cross_entropy(shift=True)"
    default_metrics = ("perplexity",)

    parts = ("decoder",)

    def part_spec(self, part: str) -> ModelSpec:
        return gpt2(self.config, cache=True)

    def decoder(self) -> Model:
        """The incremental decoder (past keys/values in and out) with this model's weights, in its
        framework; made once and remade after ``set_weights`` or ``train``."""
        return self.part("decoder")

    def generate(self, prompt: str | Sequence[str] | Sequence[int] | np.ndarray, max_new_tokens: int = 20, *,
                 do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, use_cache: bool = True,
                 session: Any = None) -> str | list[str] | np.ndarray:
        """Continue ``prompt``: a text (needs the tokenizer; gives text back), a list of texts
        (a list back), or ids ``(L,)`` or ``(batch, L)`` (gives ids back, prompt included, as
        transformers' ``generate``). A list of texts runs as one batch: of one length, as any
        batch; of different lengths, padded on the right and run whole every step
        (:class:`~llmasos.zoo.generation.RightPadded`), each text getting the tokens it would
        alone when greedy (a cached decoder ``session`` continues them one after another instead).

        Greedy unless ``do_sample``; stops early at the config's ``eos_token_id``. ``use_cache``
        runs :meth:`decoder`, one position per step; without it the whole sequence runs every
        step (the same tokens, slower). ``session`` (an ONNX file path or an ONNX Runtime
        session) runs an export of either model instead: the decoder if the file takes past
        keys/values, else the plain model.
        """
        options = {"do_sample": do_sample, "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
        if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
            return self._generate_texts(list(prompt), max_new_tokens, options, use_cache, session)
        ids = self._ids(prompt, max_new_tokens)
        widths = [self.config.n_embd] * 2 * self.config.n_layer
        if session is not None:
            if isinstance(session, (str, os.PathLike)):
                from ..export import load

                session = load(session)
            run, cached = generation.onnx_runner(session), len(session.get_inputs()) > 1
        else:
            run, cached = (self.decoder() if use_cache else self).compiled.predict, use_cache
        decoder = generation.Cached(run, widths) if cached else generation.Uncached(run)
        out = generation.generate(decoder, ids, max_new_tokens, eos_token_id=self.config.eos_token_id,
                                  do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        return self.tokenizer.decode(out[0].tolist()) if isinstance(prompt, str) else out

    def _generate_texts(self, texts: list[str], max_new_tokens: int, options: dict, use_cache: bool,
                        session: Any) -> list[str]:
        tokens = self.tokens(texts, truncation=None)
        lengths = tokens.lengths
        if lengths.min() == lengths.max():
            out = self.generate(self._ids(tokens.pad()["input_ids"], max_new_tokens), max_new_tokens, **options,
                                use_cache=use_cache, session=session)
            return [self._text(row, int(lengths[0])) for row in out]
        if session is not None:
            if isinstance(session, (str, os.PathLike)):
                from ..export import load

                session = load(session)
            if len(session.get_inputs()) > 1:  # a cached decoder has one past for the whole batch
                return [self.generate(text, max_new_tokens, **options, session=session) for text in texts]
            run = generation.onnx_runner(session)
        else:
            run = self.compiled.predict
        ids = self._ids(tokens.pad()["input_ids"], max_new_tokens)
        out = generation.generate(generation.RightPadded(run, lengths), ids, max_new_tokens,
                                  eos_token_id=self.config.eos_token_id, **options)
        longest = ids.shape[1]
        return [self._text(np.concatenate([row[:length], row[longest:]]), int(length))
                for row, length in zip(out, lengths)]

    def _text(self, row: np.ndarray, length: int) -> str:
        """A generated row as text, up to its first end-of-text token (later ones only pad the batch)."""
        new = row[length:].tolist()
        if self.config.eos_token_id in new:
            new = new[:new.index(self.config.eos_token_id) + 1]
        return self.tokenizer.decode(row[:length].tolist() + new)

    def _ids(self, prompt: str | Sequence[int] | np.ndarray, max_new_tokens: int) -> np.ndarray:
        if isinstance(prompt, str):
            ids = self.encode(prompt)["input_ids"]
        else:
            ids = np.asarray(prompt, dtype=np.int64)
            ids = ids[None] if ids.ndim == 1 else ids
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise DataError(f"a prompt is a text or ids (length,) / (batch, length), got shape {ids.shape}")
        if ids.shape[1] + max_new_tokens > self.config.n_positions:
            raise DataError(f"{ids.shape[1]} prompt tokens and max_new_tokens={max_new_tokens} exceed the "
                            f"{self.config.n_positions} positions this GPT-2 has")
        return ids


register(name="gpt2", task=GENERATION, input_size=(GPT2Config.n_positions,), labels=None, classifier="logits",
         adapt_state_dict=hf_state_dict, model_class=GPT2)(gpt2)
