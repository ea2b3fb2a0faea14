"""Marian (Junczys-Dowmunt et al., 2018) translation models, as Hugging Face's ``MarianMTModel``
computes them (the Helsinki-NLP ``opus-mt-*`` family), in the neutral spec, with generation.

An encoder-decoder Transformer (post-LayerNorm) over one shared vocabulary: the table
``shared`` embeds source and target ids (scaled by ``sqrt(d_model)`` with ``scale_embedding``)
and, tied, scores the next token (plus ``final_logits_bias``). Positions are fixed sinusoids
(sines in the first half of the features, cosines in the second), computed, not loaded, and
never trained. Layer names are Hugging Face's without ``model.`` (``encoder.layers.0.self_attn.q_proj``,
``decoder.layers.0.encoder_attn.k_proj``, ``shared``).

Three specs share these weights by name (:func:`marian` with ``part=``):

* ``"seq2seq"`` (the model itself): ``input_ids``, ``attention_mask`` and ``decoder_input_ids``
  to ``logits`` ``(batch, target length, vocab)``, as ``MarianMTModel(...).logits``;
* ``"encoder"``: ``input_ids``, ``attention_mask`` to ``encoder_hidden_states`` and, for every
  decoder layer, the cross-attention keys and values ``cross_key_i``/``cross_value_i`` projected
  from them once per source;
* ``"decoder"``: one generation step with a key/value cache: ``decoder_input_ids``,
  ``attention_mask``, ``cross_key_i``/``cross_value_i`` and ``past_key_i``/``past_value_i`` per
  layer to the last position's ``logits`` and ``present_key_i``/``present_value_i``.

The encoder/decoder pair is what Optimum exports as encoder and decoder-with-past, with the first
step run by the same decoder from an empty past.

>>> config = MarianConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
...                       decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, pad_token_id=49)
>>> [i.name for i in marian(config, part="decoder").inputs]
['decoder_input_ids', 'attention_mask', 'cross_key_0', 'cross_value_0', 'past_key_0', 'past_value_0']

::

    mt = zoo.load("marian", pretrained="path/to/opus-mt-en-de")        # source.spm/target.spm/vocab.json
    mt.translate(["How are you?"])             # ['Wie geht es Ihnen?'], with the folder's 4 beams
    mt.translate(["How are you?"], num_beams=1, max_new_tokens=20)       # greedy
    export.to_onnx(mt.encoder(), "encoder.onnx"); export.to_onnx(mt.decoder(), "decoder.onnx")
    mt.translate(["How are you?"], session=("encoder.onnx", "decoder.onnx"))   # the same from ONNX Runtime
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError, WeightsError, ZooError
from ..model import Model
from ..spec import ModelSpec
from ..texts import Tokens, tokenize
from . import generation
from .registry import register
from .spm import SentencePieceVocabulary
from .text import HFConfig, TextModel, activation, load_tokenizer

TRANSLATION = "translation"
PARTS = ("seq2seq", "encoder", "decoder")
POSITIONS = ("encoder.embed_positions", "decoder.embed_positions")
_TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")


@dataclasses.dataclass(frozen=True)
class MarianConfig(HFConfig):
    """``MarianConfig``'s architecture settings, with transformers' defaults (a checkpoint's
    ``config.json`` leaves out what equals them); :data:`OPUS_MT` is the standard model's."""

    FIXED = {"share_encoder_decoder_embeddings": True, "tie_word_embeddings": True, "is_encoder_decoder": True}

    vocab_size: int = 58101
    decoder_vocab_size: int | None = None
    d_model: int = 1024
    encoder_layers: int = 12
    decoder_layers: int = 12
    encoder_attention_heads: int = 16
    decoder_attention_heads: int = 16
    encoder_ffn_dim: int = 4096
    decoder_ffn_dim: int = 4096
    activation_function: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    max_position_embeddings: int = 1024
    scale_embedding: bool = False
    pad_token_id: int = 58100
    eos_token_id: int = 0
    decoder_start_token_id: int = 58100
    forced_eos_token_id: int | None = 0

    def __post_init__(self) -> None:
        if self.decoder_vocab_size not in (None, self.vocab_size):
            raise ZooError(f"decoder_vocab_size {self.decoder_vocab_size} differs from vocab_size {self.vocab_size}: "
                           f"separate target vocabularies are not supported (only a shared one)")


# Helsinki-NLP/opus-mt-en-de (and the other opus-mt-* models of its size)
OPUS_MT = MarianConfig(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                       decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                       activation_function="swish", max_position_embeddings=512, scale_embedding=True)


def sinusoids(positions: int, dim: int) -> np.ndarray:
    """Marian's position table: ``sin`` of the even angles in the first half of the features,
    ``cos`` of the odd ones in the second (not interleaved)."""
    angles = np.arange(positions)[:, None] / np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None, :]
    half = (dim + 1) // 2
    out = np.empty((positions, dim))
    out[:, :half], out[:, half:] = np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])
    return out.astype(np.float32)


def _embed(spec: ModelSpec, stack: str, ids_node: str, config: MarianConfig, past: str | None = None) -> str:
    scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
    spec.add("Rescaling", scale, name=f"{stack}.embed_scale", inputs=ids_node)
    spec.add("PositionEmbedding", config.max_position_embeddings, name=f"{stack}.embed_positions",
             inputs=[f"{stack}.embed_scale", past] if past else f"{stack}.embed_scale")
    return spec.add("Dropout", config.dropout, name=f"{stack}.dropout").last


def _project(spec: ModelSpec, prefix: str, roles: str, source: str, config: MarianConfig) -> None:
    for role in roles:
        spec.add("Dense", config.d_model, name=f"{prefix}.{role}_proj", inputs=source)


def _attention(spec: ModelSpec, prefix: str, query: str, memory: str | tuple[str, str], heads: int,
               config: MarianConfig, *, causal: bool = False, mask: str | None = None, cache: int | None = None) -> str:
    """Projections, multi-head attention and the output projection, added back to ``query``
    and normalised. ``memory`` is the sequence keys and values are projected from, or the
    (key, value) pair already projected; with ``cache`` (a layer index) past keys/values come first."""
    _project(spec, prefix, "q", query, config)
    if isinstance(memory, str):
        _project(spec, prefix, "kv", memory, config)
    key, value = (f"{prefix}.k_proj", f"{prefix}.v_proj") if isinstance(memory, str) else memory
    if cache is not None:
        spec.add("Concatenate", axis=1, name=f"present_key_{cache}", inputs=[f"past_key_{cache}", key])
        spec.add("Concatenate", axis=1, name=f"present_value_{cache}", inputs=[f"past_value_{cache}", value])
        key, value = f"present_key_{cache}", f"present_value_{cache}"
    spec.add("Attention", heads, causal=causal, dropout=config.attention_dropout, name=f"{prefix}.heads",
             inputs=[f"{prefix}.q_proj", key, value, *([mask] if mask else [])])
    spec.add("Dense", config.d_model, name=f"{prefix}.out_proj")
    spec.add("Dropout", config.dropout, name=f"{prefix}.dropout")
    spec.add("Add", name=f"{prefix}.residual", inputs=[f"{prefix}.dropout", query])
    return spec.add("LayerNorm", name=f"{prefix}_layer_norm").last


def _feed_forward(spec: ModelSpec, prefix: str, source: str, width: int, config: MarianConfig) -> str:
    spec.add("Dense", width, activation=activation(config.activation_function, "activation_function"),
             name=f"{prefix}.fc1", inputs=source)
    spec.add("Dropout", config.activation_dropout, name=f"{prefix}.activation_dropout")
    spec.add("Dense", config.d_model, name=f"{prefix}.fc2")
    spec.add("Dropout", config.dropout, name=f"{prefix}.ffn_dropout")
    spec.add("Add", name=f"{prefix}.ffn_residual", inputs=[f"{prefix}.ffn_dropout", source])
    return spec.add("LayerNorm", name=f"{prefix}.final_layer_norm").last


def _encoder(spec: ModelSpec, config: MarianConfig) -> None:
    spec.add("Embedding", config.d_model, vocab_size=config.vocab_size, name="shared", inputs="input_ids")
    node = _embed(spec, "encoder", "shared", config)
    for index in range(config.encoder_layers):
        prefix = f"encoder.layers.{index}"
        node = _attention(spec, f"{prefix}.self_attn", node, node, config.encoder_attention_heads, config,
                          mask="attention_mask")
        node = _feed_forward(spec, prefix, node, config.encoder_ffn_dim, config)
    spec.add("Activation", "linear", name="encoder_hidden_states", inputs=node)  # the decoder reads it by name


def _decoder(spec: ModelSpec, ids_node: str, config: MarianConfig, cache: bool) -> None:
    node = _embed(spec, "decoder", ids_node, config, past="past_key_0" if cache else None)
    for index in range(config.decoder_layers):
        prefix = f"decoder.layers.{index}"
        node = _attention(spec, f"{prefix}.self_attn", node, node, config.decoder_attention_heads, config,
                          causal=True, cache=index if cache else None)
        # the step decoder takes the encoder states' projections, made once by the encoder part
        memory = (f"cross_key_{index}", f"cross_value_{index}") if cache else "encoder_hidden_states"
        node = _attention(spec, f"{prefix}.encoder_attn", node, memory, config.decoder_attention_heads, config,
                          mask="attention_mask")
        node = _feed_forward(spec, prefix, node, config.decoder_ffn_dim, config)
    if cache:
        node = spec.add("TakeToken", -1, name="last", inputs=node).last  # the next token's scores only
    spec.add("Unembedding", embedding="shared", use_bias=True, name="logits", inputs=node)


def marian(config: MarianConfig = OPUS_MT, task: str = TRANSLATION, num_labels: int = 0, logits: bool = True,
           part: str = "seq2seq") -> ModelSpec:
    """One of Marian's specs (see the module docstring); ``task``, ``num_labels`` and ``logits``
    are the zoo's common builder arguments and change nothing here."""
    if part not in PARTS:
        raise ZooError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    spec = ModelSpec()
    source = ["encoder_sequence_length"]  # Optimum's names of the dynamic axes
    if part in ("seq2seq", "encoder"):
        spec.add_input("input_ids", (None,), "int64", source).add_input("attention_mask", (None,), "int64", source)
        _encoder(spec, config)
        if part == "encoder":
            cross = []
            for index in range(config.decoder_layers):
                prefix = f"decoder.layers.{index}.encoder_attn"
                _project(spec, prefix, "kv", "encoder_hidden_states", config)
                for role, what in (("k", "key"), ("v", "value")):
                    cross.append(spec.add("Activation", "linear", name=f"cross_{what}_{index}",
                                          inputs=f"{prefix}.{role}_proj").last)
            return spec.set_outputs(["encoder_hidden_states", *cross])
        spec.add_input("decoder_input_ids", (None,), "int64", ["decoder_sequence_length"])
        spec.add("Embedding", tied_to="shared", name="decoder.embed_tokens", inputs="decoder_input_ids")
        _decoder(spec, "decoder.embed_tokens", config, cache=False)
        return spec.set_outputs("logits")
    spec.add_input("decoder_input_ids", (None,), "int64", ["decoder_sequence_length"])
    spec.add_input("attention_mask", (None,), "int64", source)
    presents = []
    for kind, axis in (("cross", source), ("past", ["past_decoder_sequence_length"])):
        for index in range(config.decoder_layers):
            spec.add_input(f"{kind}_key_{index}", (None, config.d_model), axes=axis)
            spec.add_input(f"{kind}_value_{index}", (None, config.d_model), axes=axis)
    for index in range(config.decoder_layers):
        presents += [f"present_key_{index}", f"present_value_{index}"]
    # without the encoder, the decoder's lookup owns the shared table (same name, same weights)
    spec.add("Embedding", config.d_model, vocab_size=config.vocab_size, name="shared", inputs="decoder_input_ids")
    _decoder(spec, "shared", config, cache=True)
    return spec.set_outputs(["logits", *presents])


def shift_right(labels: np.ndarray, start_id: int, pad_id: int) -> np.ndarray:
    """Labels one position to the right behind ``start_id``, ignored labels (any negative) as ``pad_id``.

    >>> shift_right(np.array([[5, 6, 0], [7, 0, -100]]), start_id=9, pad_id=9).tolist()
    [[9, 5, 6], [9, 7, 0]]
    """
    labels = np.asarray(labels, np.int64)
    shifted = np.empty_like(labels)
    shifted[:, 0], shifted[:, 1:] = start_id, labels[:, :-1]
    return np.where(shifted < 0, pad_id, shifted)


def hf_state_dict(state: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    """A Hugging Face Marian checkpoint with this spec's keys: no ``model.`` prefix, the tied
    copies of ``shared`` dropped (after checking they are copies), ``final_logits_bias`` as the
    head's bias, the position tables computed (checkpoints leave them out)."""
    shapes = spec.weight_shapes()
    out = {f"{name}.weight": sinusoids(*shapes[name]["embeddings"]) for name in POSITIONS if name in shapes}
    for key, value in state.items():
        key = key.removeprefix("model.")
        if key.endswith("embed_positions.weight"):
            continue
        if key == "final_logits_bias":
            out["logits.bias"] = value.reshape(-1)
        elif key in _TIED_COPIES:
            if "shared.weight" in state or "model.shared.weight" in state:
                shared = state.get("model.shared.weight", state.get("shared.weight"))
                if not np.array_equal(value, shared):
                    raise WeightsError(f"the checkpoint's {key} differs from shared.weight; llmasos' Marian shares "
                                       f"one vocabulary table, as share_encoder_decoder_embeddings=True means")
            else:
                out["shared.weight"] = value
        else:
            out[key] = value
    return out


class Marian(TextModel):
    """A zoo Marian: a :class:`~llmasos.model.Model` (the seq2seq spec) with its config, tokenizer,
    :meth:`encoder`, :meth:`decoder` and :meth:`translate`."""

    config_class = MarianConfig
    model_types = ("marian",)
    tasks = (TRANSLATION,)
    hf_repo = "Helsinki-NLP/opus-mt-en-de"
    positions = "max_position_embeddings"
    build_spec = staticmethod(marian)

    parts = ("encoder", "decoder")
    # MarianMTModel(labels=...)'s loss: every target position against its label, padding (-100) left out
    default_loss = "sequence_cross_entropy"
    default_metrics = ("perplexity",)

    @property
    def _pad_id(self) -> int:
        return self.config.pad_token_id

    @classmethod
    def layer_groups(cls, spec: ModelSpec) -> dict[str, set[str]]:
        """``freeze="encoder"``: the encoder's own layers (the shared vocabulary table also embeds
        and scores the target, so it stays trainable); ``freeze="embeddings"``: that table (the
        sinusoidal positions never train anyway)."""
        encoder = {name for name in spec.weight_shapes() if name.startswith("encoder.")}
        return {"encoder": encoder - set(POSITIONS), "embeddings": {"shared"}}

    def tokens(self, texts: Sequence[str], truncation: bool | None = False, target: bool = False) -> Tokens:
        """Source texts as ``input_ids`` and ``attention_mask``, unpadded, each ending in ``</s>``;
        with ``target``, target texts' ids (the labels, made with ``target.spm`` as
        ``MarianTokenizer(text_target=...)`` makes them)."""
        if self.tokenizer is None:
            raise DataError(f"{self.name} has no tokenizer: load it from a folder holding source.spm, target.spm and "
                            f"vocab.json (or tokenizer.json), or pass tokenizer= to zoo.load")
        tokenizer = self.tokenizer.for_targets() if target and hasattr(self.tokenizer, "for_targets") else \
            self.tokenizer
        columns = {"input_ids": "int64"} if target else {"input_ids": "int64", "attention_mask": "int64"}
        return tokenize(tokenizer, list(texts), columns, self._pad_id, self.max_length, truncation)

    def decoder_input_ids(self, labels: np.ndarray) -> np.ndarray:
        """The decoder's inputs for teacher forcing: the labels shifted one position right behind
        ``decoder_start_token_id``, ignored labels (-100) as the pad id (transformers'
        ``shift_tokens_right``): ``[[5, 6, 0], [7, 0, -100]]`` -> ``[[start, 5, 6], [start, 7, 0]]``."""
        return shift_right(labels, self.config.decoder_start_token_id, self.config.pad_token_id)

    @classmethod
    def read_tokenizer(cls, source: Any, folder) -> Any:
        """A tokenizer given, else the folder's SentencePiece files (``source.spm``,
        ``target.spm``, ``vocab.json``) or its ``tokenizer.json``."""
        if source is None and folder is not None and SentencePieceVocabulary.in_folder(folder):
            return SentencePieceVocabulary(folder)
        if isinstance(source, (str, os.PathLike)) and SentencePieceVocabulary.in_folder(source):
            return SentencePieceVocabulary(source)
        return load_tokenizer(source, folder)

    @classmethod
    def constant_weights(cls, config: MarianConfig, spec: ModelSpec) -> dict:
        table = sinusoids(config.max_position_embeddings, config.d_model)
        layers = {layer.name for layer in spec.layers}
        return {name: {"embeddings": table} for name in POSITIONS if name in layers}

    def part_spec(self, part: str) -> ModelSpec:
        return marian(self.config, part=part)

    def encoder(self) -> Model:
        """The encoder (``input_ids``, ``attention_mask`` -> ``encoder_hidden_states`` and the
        cross-attention keys/values) with this model's weights; remade after ``set_weights`` or
        ``train``."""
        return self.part("encoder")

    def decoder(self) -> Model:
        """One generation step with a key/value cache (see the module docstring)."""
        return self.part("decoder")

    def encode(self, texts: str | Sequence[str]) -> dict[str, np.ndarray]:
        """Source texts as the encoder's ``input_ids`` and ``attention_mask`` (ending in ``</s>``)."""
        if self.tokenizer is None:
            raise DataError(f"{self.name} has no tokenizer: load it from a folder holding source.spm, target.spm and "
                            f"vocab.json (or tokenizer.json), or pass tokenizer= to zoo.load")
        from ..texts import encode

        return encode(self.tokenizer, [texts] if isinstance(texts, str) else list(texts),
                      {"input_ids": "int64", "attention_mask": "int64"}, self._pad_id, self.max_length)

    @cached_property
    def generation_settings(self) -> dict[str, Any]:
        """The defaults :meth:`generate` takes from the folder the model came from (read once), as
        transformers reads them: ``generation_config.json`` (else ``config.json``) ``num_beams``,
        ``length_penalty``, ``early_stopping``, ``forced_eos_token_id``, ``renormalize_logits`` and
        ``max_length``; transformers' defaults where the folder says nothing (greedy)."""
        settings = {"num_beams": 1, "length_penalty": 1.0, "early_stopping": False,
                    "forced_eos_token_id": self.config.forced_eos_token_id, "renormalize_logits": False,
                    "max_length": None}
        folder = self.metadata.get("pretrained") if self.metadata else None
        for name in ("config.json", "generation_config.json"):  # the second wins, as in transformers
            path = Path(folder) / name if folder else None
            if path is not None and path.is_file():
                found = json.loads(path.read_text())
                settings.update({key: found[key] for key in settings if key in found})
        return settings

    def generate(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
                 max_new_tokens: int | None = None, *, num_beams: int | None = None, session: Any = None,
                 **options: Any) -> np.ndarray:
        """Target ids ``(batch, 1 + new)`` for source ids ``(batch, L)``, starting from
        ``decoder_start_token_id``, as transformers' ``generate`` makes them: beam search with
        ``num_beams`` > 1 (``length_penalty``, ``early_stopping``), else greedy, or sampling with
        ``do_sample`` (``temperature``, ``top_k``, ``top_p``, ``seed``). The pad token is never
        chosen, the last step is ``forced_eos_token_id`` when set, and rows that ended are padded.
        Unset options come from :attr:`generation_settings` (``max_new_tokens``: the folder's
        ``max_length`` less the start token, else 64). ``session`` is a pair ``(encoder,
        decoder)`` of ONNX files or ONNX Runtime sessions of :meth:`encoder` and :meth:`decoder`."""
        settings = self.generation_settings
        beams = settings["num_beams"] if num_beams is None else num_beams
        if max_new_tokens is None:
            max_new_tokens = settings["max_length"] - 1 if settings["max_length"] else 64
        ids = np.asarray(input_ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise DataError(f"input_ids must be a non-empty batch (batch, length), got shape {ids.shape}")
        mask = np.ones(ids.shape, np.int64) if attention_mask is None else np.asarray(attention_mask)
        if not np.issubdtype(mask.dtype, np.integer):
            raise DataError(f"attention_mask takes integers (1 = token, 0 = padding) as tokenizers give them, "
                            f"got {mask.dtype}; pass mask.astype('int64')")
        mask = mask.astype(np.int64)
        if mask.shape != ids.shape:
            raise DataError(f"attention_mask has shape {mask.shape}; input_ids have {ids.shape}")
        if max_new_tokens > self.config.max_position_embeddings:  # the last new token is never fed back
            raise DataError(f"max_new_tokens={max_new_tokens} exceeds the {self.config.max_position_embeddings} "
                            f"positions this Marian has")
        sampling = options.get("do_sample", False)
        if beams != 1 and sampling:
            raise DataError("beam search (num_beams > 1) and do_sample=True exclude each other; choose one")
        encode_step, decode_step = self._runners(session)
        _, *cross = encode_step([ids, mask])
        if beams > 1:  # each source's beams side by side
            mask, cross = np.repeat(mask, beams, axis=0), [np.repeat(c, beams, axis=0) for c in cross]
        step = generation.Cached(lambda inputs: decode_step([inputs[0], mask, *cross, *inputs[1:]]),
                                 [self.config.d_model] * 2 * self.config.decoder_layers)
        start = np.full((len(ids), 1), self.config.decoder_start_token_id, np.int64)
        common = {"eos_token_id": self.config.eos_token_id, "pad_token_id": self.config.pad_token_id,
                  "suppress": [self.config.pad_token_id],
                  "forced_eos_token_id": options.pop("forced_eos_token_id", settings["forced_eos_token_id"])}
        if beams == 1:
            return generation.generate(step, start, max_new_tokens, **common, **options)
        search = {key: options.pop(key, settings[key]) for key in ("length_penalty", "early_stopping")}
        if options:
            raise DataError(f"beam search takes length_penalty, early_stopping and forced_eos_token_id, not "
                            f"{', '.join(sorted(options))}")
        return generation.beam_search(step, start, max_new_tokens, beams, **common, **search,
                                      renormalize=bool(settings["renormalize_logits"]))

    def _runners(self, session: Any) -> tuple[generation.Runner, generation.Runner]:
        if session is None:
            return self.encoder().compiled.predict, self.decoder().compiled.predict
        if not isinstance(session, (tuple, list)) or len(session) != 2:
            raise DataError("session must be a pair (encoder, decoder) of ONNX files or ONNX Runtime sessions, made "
                            "from model.encoder() and model.decoder()")
        from ..export import load

        return tuple(generation.onnx_runner(load(s) if isinstance(s, (str, os.PathLike)) else s) for s in session)

    def translate(self, texts: str | Sequence[str], max_new_tokens: int | None = None, *, session: Any = None,
                  **options: Any) -> str | list[str]:
        """Translate one text or a list of texts (see :meth:`generate` for the options; by default
        what the model's folder says, e.g. beam search with 4 beams for opus-mt)."""
        batch = self.encode(texts)
        out = self.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens, session=session, **options)
        decoded = [self.tokenizer.decode(row[1:].tolist(), skip_special_tokens=True) for row in out]
        return decoded[0] if isinstance(texts, str) else decoded


@register(name="marian", task=TRANSLATION, input_size=(OPUS_MT.max_position_embeddings,), labels=None,
          classifier="logits", adapt_state_dict=hf_state_dict, model_class=Marian)
def marian_opus_mt() -> ModelSpec:
    """The standard model's spec (opus-mt-en-de's size), for ``zoo.list()``."""
    return marian(OPUS_MT)
