"""Wav2Vec2 (Baevski et al., 2020) for speech recognition, as Hugging Face's ``Wav2Vec2ForCTC``
computes it, in the neutral spec, with greedy CTC decoding.

A 16 kHz waveform ``input_values`` ``(batch, samples)`` goes through a stack of strided 1-D
convolutions (``feature_extractor``: 20 ms frames for the standard strides), a projection, a
convolutional position embedding (grouped, ``num_conv_pos_embeddings`` wide), a Transformer
encoder (post-LayerNorm, or pre-LayerNorm with ``do_stable_layer_norm``) and a linear
``lm_head`` to ``logits`` ``(batch, frames, vocab)`` over characters.

Layer names are Hugging Face's modules (``feature_extractor.conv_layers.0.conv``,
``encoder.layers.0.attention.q_proj``, ``lm_head``). The position convolution's weight norm
(``weight_g``/``weight_v``, or ``parametrizations.weight.original0/1``) is folded into one plain
kernel when a checkpoint is read: the same outputs, and fine-tuning then trains that kernel.

>>> spec = wav2vec2(Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
...                                intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 3),
...                                conv_stride=(5, 2), num_conv_pos_embeddings=4,
...                                num_conv_pos_embedding_groups=2, vocab_size=12))
>>> spec.shapes()["input_values"], spec.shapes()["logits"]
((None,), (None, 12))

::

    asr = zoo.load("wav2vec2", pretrained="path/to/wav2vec2-base-960h")   # vocab.json comes along
    asr.transcribe("speech.wav")                                         # 'A MAN SAID TO THE UNIVERSE'
    export.to_onnx(asr, "asr.onnx")
    asr.transcribe(samples, session="asr.onnx")                          # the same text from ONNX Runtime
"""

from __future__ import annotations

import dataclasses
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import layers
from ..errors import DataError, WeightsError, ZooError
from ..losses import CTC_PADDING_LOGIT
from ..losses import get as get_loss
from ..spec import ModelSpec
from ..texts import Tokens
from .. import audio
from . import streaming
from .registry import register
from .text import HFConfig, TextModel, activation

RECOGNITION = "automatic-speech-recognition"
# keys of Hugging Face checkpoints that hold no weight of this model (pre-training heads)
_IGNORED_PREFIXES = ("masked_spec_embed", "quantizer.", "project_hid.", "project_q.")


@dataclasses.dataclass(frozen=True)
class Wav2Vec2Config(HFConfig):
    """``Wav2Vec2Config``'s architecture settings; the defaults are wav2vec2-base-960h's."""

    FIXED = {"add_adapter": False, "adapter_attn_dim": None, "use_weighted_layer_sum": False}

    vocab_size: int = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    final_dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    pad_token_id: int = 0
    ctc_zero_infinity: bool = False

    def __post_init__(self) -> None:
        for name in ("conv_dim", "conv_kernel", "conv_stride"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # config.json holds lists
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
            raise ZooError(f"conv_dim, conv_kernel and conv_stride must have one entry per feature layer, got "
                           f"{len(self.conv_dim)}, {len(self.conv_kernel)} and {len(self.conv_stride)}")
        if self.feat_extract_norm not in ("group", "layer"):
            raise ZooError(f"feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}")

    @property
    def receptive_field(self) -> int:
        """The fewest samples that make one frame."""
        size = 1
        for kernel, stride in reversed([*zip(self.conv_kernel, self.conv_stride)]):
            size = (size - 1) * stride + kernel
        return size


@layers.register("FrameMask")
class FrameMask(layers.Layer):
    """Which frames of a stack of strided 1-D convolutions hold signal, from the mask of its input
    samples ``(samples,)`` (1 = sample, 0 = padding, ones then zeros as feature extractors give it)
    to ``(frames,)`` float 1/0: a frame counts when the last sample of its window does, so a clip
    of ``L`` samples keeps ``(L - kernel) // stride + 1`` frames per convolution, transformers'
    ``_get_feat_extract_output_lengths``.

    >>> FrameMask([10, 3], [5, 2]).output_shape((400,))
    (39,)
    """

    def __init__(self, kernels: Sequence[int], strides: Sequence[int]) -> None:
        self.kernels, self.strides = [int(k) for k in kernels], [int(s) for s in strides]

    def output_shape(self, input_shape: Any) -> tuple:
        (length,) = input_shape
        for kernel, stride in zip(self.kernels, self.strides):
            length = None if length is None else (length - kernel) // stride + 1
        return (length,)

    def call(self, ops: Any, mask: Any) -> Any:
        # a window's last sample is at kernel - 1 + stride * frame: a strided slice, in every framework and ONNX
        for kernel, stride in zip(self.kernels, self.strides):
            mask = mask[:, kernel - 1::stride]
        return ops.where(mask > 0, 1.0, 0.0)


@layers.register("MaskFrames")
class MaskFrames(layers.Layer):
    """A sequence ``(L, D)`` with the frames its mask ``(L,)`` marks 0 set to zero (transformers'
    Wav2Vec2 encoder zeroes padding before its position convolution, which would spread it)."""

    num_inputs = 2

    def output_shape(self, input_shape: Any) -> tuple:
        return tuple(input_shape[0])

    def call(self, ops: Any, x: Any, mask: Any) -> Any:
        return x * mask[:, :, None]


@layers.register("CTCPadding")
class CTCPadding(layers.Layer):
    """CTC logits ``(L, V)`` where the mask ``(L,)`` marks padding replaced by a certain blank: 0
    for the ``blank`` class, :data:`~llmasos.losses.CTC_PADDING_LOGIT` for the others. Greedy
    decoding then reads padding as nothing, and the CTC loss leaves those frames out, as
    transformers does with the lengths its ``attention_mask`` gives."""

    num_inputs = 2

    def __init__(self, blank: int) -> None:
        self.blank = int(blank)

    def output_shape(self, input_shape: Any) -> tuple:
        return tuple(input_shape[0])

    def call(self, ops: Any, logits: Any, mask: Any) -> Any:
        real = mask[:, :, None] > 0
        others = ops.where(real, logits, CTC_PADDING_LOGIT)
        blank = ops.where(real, logits[:, :, self.blank:self.blank + 1], 0.0)
        return ops.concat([others[:, :, :self.blank], blank, others[:, :, self.blank + 1:]], axis=-1)


def _feature_encoder(spec: ModelSpec, config: Wav2Vec2Config) -> str:
    """Strided convolutions over the raw signal: GroupNorm after the first ("group") or
    LayerNorm over the channels after each ("layer"), GELU after every one."""
    spec.add("Reshape", [1, -1], name="feature_extractor.signal", inputs="input_values")  # one channel
    act = activation(config.feat_extract_activation, "feat_extract_activation")
    for index, (dim, kernel, stride) in enumerate(zip(config.conv_dim, config.conv_kernel, config.conv_stride)):
        prefix = f"feature_extractor.conv_layers.{index}"
        normed = config.feat_extract_norm == "layer" or index == 0
        spec.add("Conv1D", dim, kernel_size=kernel, stride=stride, use_bias=config.conv_bias,
                 activation="linear" if normed else act, name=f"{prefix}.conv")
        if config.feat_extract_norm == "layer":
            spec.add("Permute", [2, 1], name=f"{prefix}.frames")
            spec.add("LayerNorm", name=f"{prefix}.layer_norm")
            spec.add("Permute", [2, 1], name=f"{prefix}.channels")
        elif index == 0:
            spec.add("GroupNorm", dim, name=f"{prefix}.layer_norm")  # one group per channel
        if normed:
            spec.add("Activation", act, name=f"{prefix}.activation")
    return spec.add("Permute", [2, 1], name="feature_extractor.frames").last


def _position_embedding(spec: ModelSpec, source: str, config: Wav2Vec2Config) -> str:
    """A wide grouped convolution over time, added to its input; an even kernel's extra last
    frame is dropped (Hugging Face's Wav2Vec2SamePadLayer)."""
    prefix = "encoder.pos_conv_embed"
    kernel = config.num_conv_pos_embeddings
    spec.add("Permute", [2, 1], name=f"{prefix}.channels", inputs=source)
    spec.add("Conv1D", config.hidden_size, kernel_size=kernel, padding=kernel // 2,
             groups=config.num_conv_pos_embedding_groups,
             activation=activation(config.feat_extract_activation, "feat_extract_activation"), name=f"{prefix}.conv")
    node = spec.add("Permute", [2, 1], name=f"{prefix}.frames").last
    if kernel % 2 == 0:
        node = spec.add("Cropping1D", [0, 1], name=f"{prefix}.padding").last
    return spec.add("Add", name=f"{prefix}.sum", inputs=[source, node]).last


def _encoder_layer(spec: ModelSpec, index: int, source: str, config: Wav2Vec2Config, mask: str | None) -> str:
    """Self-attention and feed-forward, each with a residual; LayerNorm after each (or before,
    with ``do_stable_layer_norm``)."""
    prefix = f"encoder.layers.{index}"
    stable = config.do_stable_layer_norm
    attended = spec.add("LayerNorm", eps=config.layer_norm_eps, name=f"{prefix}.layer_norm",
                        inputs=source).last if stable else source
    for role in ("q", "k", "v"):
        spec.add("Dense", config.hidden_size, name=f"{prefix}.attention.{role}_proj", inputs=attended)
    spec.add("Attention", config.num_attention_heads, dropout=config.attention_dropout,
             name=f"{prefix}.attention.heads",
             inputs=[f"{prefix}.attention.{r}_proj" for r in ("q", "k", "v")] + ([mask] if mask else []))
    spec.add("Dense", config.hidden_size, name=f"{prefix}.attention.out_proj")
    spec.add("Dropout", config.hidden_dropout, name=f"{prefix}.dropout")
    residual = spec.add("Add", name=f"{prefix}.attention.residual", inputs=[f"{prefix}.dropout", source]).last
    if stable:
        feed = spec.add("LayerNorm", eps=config.layer_norm_eps, name=f"{prefix}.final_layer_norm").last
    else:
        feed = residual = spec.add("LayerNorm", eps=config.layer_norm_eps, name=f"{prefix}.layer_norm").last
    spec.add("Dense", config.intermediate_size, activation=activation(config.hidden_act, "hidden_act"),
             name=f"{prefix}.feed_forward.intermediate_dense", inputs=feed)
    spec.add("Dropout", config.activation_dropout, name=f"{prefix}.feed_forward.intermediate_dropout")
    spec.add("Dense", config.hidden_size, name=f"{prefix}.feed_forward.output_dense")
    spec.add("Dropout", config.hidden_dropout, name=f"{prefix}.feed_forward.output_dropout")
    out = spec.add("Add", name=f"{prefix}.feed_forward.residual",
                   inputs=[f"{prefix}.feed_forward.output_dropout", residual]).last
    if stable:
        return out
    return spec.add("LayerNorm", eps=config.layer_norm_eps, name=f"{prefix}.final_layer_norm").last


def wav2vec2(config: Wav2Vec2Config = Wav2Vec2Config(), task: str = RECOGNITION, num_labels: int = 0,
             logits: bool = True) -> ModelSpec:
    """Wav2Vec2ForCTC's spec: ``input_values`` (samples,) to ``logits`` (frames, vocab_size).

    A model with LayerNorm in its feature encoder (``feat_extract_norm="layer"``: the large and
    "lv60" models, whose feature extractors return an attention mask) also takes
    ``attention_mask`` (samples,) int64, 1 for a sample and 0 for padding, as transformers'
    ``Wav2Vec2ForCTC(input_values, attention_mask=)``: padded frames are zeroed before the position
    convolution and no frame attends to them, so each clip's logits are those it has alone, and
    padded frames' logits are a certain blank (:class:`CTCPadding`), which the CTC loss skips.
    GroupNorm models ("group", wav2vec2-base) normalise over time, padding included, and take no
    mask, as in transformers.

    ``task``, ``num_labels`` and ``logits`` are the zoo's common builder arguments; the CTC
    head always gives logits, as transformers' does.
    """
    spec = ModelSpec().add_input("input_values", (None,), axes=["sequence_length"])
    mask = None
    if takes_mask(config):
        spec.add_input("attention_mask", (None,), "int64", axes=["sequence_length"])
        mask = spec.add("FrameMask", kernels=list(config.conv_kernel), strides=list(config.conv_stride),
                        name="feature_extractor.frame_mask", inputs="attention_mask").last
    node = _feature_encoder(spec, config)
    spec.add("LayerNorm", eps=config.layer_norm_eps, name="feature_projection.layer_norm", inputs=node)
    spec.add("Dense", config.hidden_size, name="feature_projection.projection")
    node = spec.add("Dropout", config.feat_proj_dropout, name="feature_projection.dropout").last
    if mask:
        node = spec.add("MaskFrames", name="encoder.padding", inputs=[node, mask]).last
    node = _position_embedding(spec, node, config)
    if not config.do_stable_layer_norm:
        node = spec.add("LayerNorm", eps=config.layer_norm_eps, name="encoder.layer_norm", inputs=node).last
    node = spec.add("Dropout", config.hidden_dropout, name="encoder.dropout", inputs=node).last
    for index in range(config.num_hidden_layers):
        node = _encoder_layer(spec, index, node, config, mask)
    if config.do_stable_layer_norm:
        node = spec.add("LayerNorm", eps=config.layer_norm_eps, name="encoder.layer_norm", inputs=node).last
    spec.add("Dropout", config.final_dropout, name="dropout", inputs=node)
    spec.add("Dense", config.vocab_size, name="lm_head")
    if mask:
        spec.add("CTCPadding", blank=config.pad_token_id, name="logits", inputs=["lm_head", mask])
    else:
        spec.add("Activation", "linear", name="logits")  # names the graph's output as transformers does
    return spec.set_outputs("logits")


def takes_mask(config: Wav2Vec2Config) -> bool:
    """Whether the spec of ``config`` takes ``attention_mask``: LayerNorm feature encoders do."""
    return config.feat_extract_norm == "layer"


def hf_state_dict(state: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    """A Hugging Face Wav2Vec2 checkpoint with this spec's keys: no ``wav2vec2.`` prefix, no
    pre-training heads, the position convolution's weight norm folded into its kernel."""
    out, norm = {}, {}
    for key, value in state.items():
        key = key.removeprefix("wav2vec2.")
        if key.startswith(_IGNORED_PREFIXES):
            continue
        for part, role in (("weight_g", "g"), ("weight_v", "v"), ("parametrizations.weight.original0", "g"),
                           ("parametrizations.weight.original1", "v")):
            if key.endswith(f".conv.{part}"):
                norm.setdefault(key[:-len(part)], {})[role] = value
                break
        else:
            out[key] = value
    for prefix, parts in norm.items():
        if set(parts) != {"g", "v"}:
            raise WeightsError(f"{prefix}weight: the checkpoint has half of a weight norm ({', '.join(parts)})")
        out[f"{prefix}weight"] = fold_weight_norm(parts["g"], parts["v"])
    return out


def fold_weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """torch's ``weight_norm``: ``g * v / ||v||``, the norm over every axis where ``g`` has size 1
    (Wav2Vec2 normalises per kernel tap, ``dim=2``)."""
    axes = tuple(axis for axis, size in enumerate(g.shape) if size == 1)
    return g * v / np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=axes, keepdims=True)).astype(np.float32)


class Wav2Vec2(TextModel):
    """A zoo Wav2Vec2: a :class:`~llmasos.model.Model` with its config, its CTC vocabulary (the
    ``tokenizer``) and :meth:`transcribe`."""

    config_class = Wav2Vec2Config
    model_types = ("wav2vec2",)
    tasks = (RECOGNITION,)
    hf_repo = "facebook/wav2vec2-base-960h"
    build_spec = staticmethod(wav2vec2)

    @property
    def default_loss(self) -> str:  # type: ignore[override]
        """``Wav2Vec2ForCTC(labels=...)``'s loss with ``ctc_loss_reduction="mean"`` (as transformers'
        fine-tuning script sets it): the pad token is the blank, ``ctc_zero_infinity`` as configured."""
        return str(get_loss(f"ctc(blank={self.config.pad_token_id}, zero_infinity={self.config.ctc_zero_infinity})"))

    @classmethod
    def layer_groups(cls, spec: ModelSpec) -> dict[str, set[str]]:
        """``freeze="feature_extractor"``: the convolutions over the raw signal (transformers'
        ``freeze_feature_encoder``), as fine-tuning for speech recognition usually does."""
        weighted = spec.weight_shapes()
        return {"feature_extractor": {name for name in weighted if name.startswith("feature_extractor.")}}

    def transcript_tokens(self, texts: Sequence[str]) -> Tokens:
        """Transcripts as CTC label ids (one per character, spaces as the word delimiter), unpadded."""
        if self.tokenizer is None:
            raise DataError(f"{self.name} has no CTC vocabulary to encode transcripts with: load it from a folder "
                            f"holding {audio.VOCABULARY_FILE}, or pass tokenizer= (a path to one) to zoo.load")
        return Tokens({"input_ids": [self.tokenizer.encode(text) for text in texts]}, {"input_ids": "int64"},
                      self.config.pad_token_id)

    @property
    def takes_mask(self) -> bool:
        """Whether this model takes ``attention_mask`` (LayerNorm feature encoders: see :func:`wav2vec2`)."""
        return any(spec.name == "attention_mask" for spec in self.spec.inputs)

    @property
    def masks_padding(self) -> bool:
        """Whether batches carry the padding in ``attention_mask``: for a model that takes one,
        unless its ``preprocessor_config.json`` says ``return_attention_mask: false`` (then, as
        transformers' feature extractor, every sample counts and the statistics include padding)."""
        return self.takes_mask and bool(self._preprocessor.get("return_attention_mask", True))

    def speech_inputs(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Waveforms (16 kHz arrays) as one batch of inputs, zero-padded to the longest and
        normalised as :meth:`input_values` does, with ``attention_mask`` for a model that takes
        one (so each clip gives the logits it gives alone). A GroupNorm model whose
        ``preprocessor_config.json`` asks for a mask would see the padding (it takes none), so it
        takes waveforms of one length per batch (``batch_size=1``, or clips cut alike)."""
        lengths = sorted({len(a) for a in arrays})
        if len(lengths) > 1 and not self.takes_mask and self._preprocessor.get("return_attention_mask", False):
            raise DataError(f"{self.name} expects an attention mask (its preprocessor_config.json says "
                            f"return_attention_mask), which a Wav2Vec2 with feat_extract_norm='group' does not "
                            f"take: batch waveforms of one length (batch_size=1), not {lengths} samples")
        values = self.input_values(list(arrays), None)
        if not self.takes_mask:
            return {"input_values": values}
        mask = np.ones(values.shape, np.int64)
        if self.masks_padding:
            for row, array in zip(mask, arrays):
                row[len(array):] = 0
        return {"input_values": values, "attention_mask": mask}

    def predict(self, x: Any, batch_size: int = 1024) -> np.ndarray | list[np.ndarray]:
        """:meth:`Model.predict`; a model that takes ``attention_mask`` also takes ``input_values``
        alone (an array), every sample counting, as transformers' model called without a mask."""
        if self.takes_mask and isinstance(x, np.ndarray):
            x = {"input_values": x, "attention_mask": np.ones(np.shape(x), np.int64)}
        return super().predict(x, batch_size)

    @classmethod
    def read_tokenizer(cls, source: Any, folder: Path | None) -> audio.CTCVocabulary | None:
        """A :class:`~llmasos.audio.CTCVocabulary` given, or read from a path or the folder's ``vocab.json``."""
        if source is not None and not isinstance(source, (str, os.PathLike)):
            if not isinstance(source, audio.CTCVocabulary):
                raise ZooError(f"a Wav2Vec2 tokenizer is a CTCVocabulary or a path to vocab.json, got "
                               f"{type(source).__name__}")
            return source
        if source is not None:
            return audio.CTCVocabulary.from_folder(source)
        if folder is not None and (folder / audio.VOCABULARY_FILE).is_file():
            return audio.CTCVocabulary.from_folder(folder)
        return None

    @cached_property
    def _preprocessor(self) -> dict:
        """The folder's ``preprocessor_config.json`` (transformers' defaults without one), read once."""
        folder = self.metadata.get("pretrained") if self.metadata else None
        path = Path(folder) / audio.PREPROCESSOR_FILE if folder else None
        return json.loads(path.read_text()) if path is not None and path.is_file() else {}

    def input_values(self, speech: Any, sampling_rate: int | None = audio.SAMPLING_RATE) -> np.ndarray:
        """Waveforms (arrays at ``sampling_rate``, or ``.wav`` paths) as ``input_values``
        ``(batch, samples)``: normalised and zero-padded to the longest."""
        arrays = audio.waveforms(speech, sampling_rate)
        shortest, needed = min(len(a) for a in arrays), self.config.receptive_field
        if shortest < needed:
            raise DataError(f"a waveform of {shortest} samples is shorter than the {needed} samples "
                            f"({1000 * needed / audio.SAMPLING_RATE:.0f} ms) one frame of this model needs")
        settings = self._preprocessor
        return audio.batch(arrays, bool(settings.get("do_normalize", True)),
                           padded_statistics=not settings.get("return_attention_mask", self.takes_mask))

    def transcribe(self, speech: Any, sampling_rate: int | None = audio.SAMPLING_RATE, *,
                   session: Any = None) -> str | list[str]:
        """Text for one waveform (a 1-D array or a ``.wav`` path) or a list of them, by greedy
        CTC decoding; ``session`` (an ONNX file path or ONNX Runtime session) runs an export of
        this model instead. Waveforms of different lengths run as one zero-padded batch, with
        its ``attention_mask`` for a model that takes one, as transformers runs them; one by one
        for a GroupNorm model whose ``preprocessor_config.json`` asks for a mask it cannot take."""
        if self.tokenizer is None:
            raise DataError(f"{self.name} has no CTC vocabulary: load it from a folder holding "
                            f"{audio.VOCABULARY_FILE}, or pass tokenizer= (a path to one) to zoo.load")
        arrays = audio.waveforms(speech, sampling_rate)
        if len({len(a) for a in arrays}) > 1 and not self.takes_mask and \
                self._preprocessor.get("return_attention_mask", False):
            # a GroupNorm model whose extractor gives a mask would see the padding (it takes none):
            # transcribe each waveform on its own instead
            return [self.transcribe(array, session=session) for array in arrays]
        feeds = self.speech_inputs(arrays)
        if session is None:
            logits = self.predict(feeds)
        else:
            if isinstance(session, (str, os.PathLike)):
                from ..export import load

                session = load(session)
            names = [i.name for i in session.get_inputs()]
            if sorted(names) != sorted(feeds):
                raise DataError(f"the session takes inputs {names}, this {self.name} gives {sorted(feeds)}: "
                                f"an export of another model?")
            logits = session.run(None, feeds)[0]
        texts = [self.tokenizer.decode(row) for row in logits.argmax(axis=-1)]
        return texts if audio.several(speech) else texts[0]

    def stream(self, chunk_s: float = 1.0, left_s: float = 0.5, right_s: float = 0.25,
               **options: Any) -> streaming.SpeechStream:
        """Real-time transcription of audio fed in pieces, window by window as transformers' ASR
        pipeline chunks (``chunk_length_s=chunk_s, stride_length_s=(left_s, right_s)``); options:
        ``session``, ``sampling_rate``, ``endpoint_s``. See :mod:`.streaming`.

        ``stream = asr.stream(1.0, 0.5, 0.25); events = stream.feed(pcm) + stream.finish()``"""
        return streaming.open_stream(self, chunk_s, left_s, right_s, **options)

    def ctc_settings(self) -> dict | None:
        """What a server needs to stream from an export of this model (its ``llmasos.ctc``
        metadata); None without a vocabulary."""
        return None if self.tokenizer is None else streaming.CTCSpeech.of(self).to_json()


register(name="wav2vec2", task=RECOGNITION, input_size=(audio.SAMPLING_RATE,), labels=None, classifier="lm_head",
         adapt_state_dict=hf_state_dict, model_class=Wav2Vec2)(wav2vec2)
