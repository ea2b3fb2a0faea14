"""BERT (Devlin et al., 2018) of any size, as Hugging Face's ``BertModel`` computes it, in the
neutral spec.

Layer names are the Hugging Face module names (``embeddings.word_embeddings``,
``encoder.layer.0.attention.self.query``, ``pooler.dense``, ``classifier``), so a
``BertModel`` or ``BertForSequenceClassification`` checkpoint maps onto them key by key (the
``bert.`` prefix and old ``LayerNorm.gamma/beta`` names are accepted). The model takes
``input_ids``, ``attention_mask`` (1 = token, 0 = padding) and ``token_type_ids``, each
``(batch, length)``; it returns ``last_hidden_state`` or, for ``task="text-classification"``,
the class probabilities (logits with ``logits=True``) from the ``[CLS]`` pooler.

>>> spec = bert(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
...                        vocab_size=100), task="text-classification", num_labels=3)
>>> spec.shapes()["last_hidden_state"], spec.shapes()["classifier"]
((None, 32), (3,))

Fine-tuning on texts, in either framework::

    model = zoo.load("bert", framework="tf", pretrained="bert-folder", task="text-classification", num_labels=2)
    model.train(model.dataset(texts, labels), Optimizer("AdamW", lr=5e-5), epochs=3)
    model.classify(["what a good film"])        # the folder's id2label names, or LABEL_0/LABEL_1
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ..errors import ZooError
from ..spec import ModelSpec
from .registry import register
from .text import HFConfig, TextModel, activation

CLASSIFICATION = "text-classification"
# keys of Hugging Face checkpoints that hold no weight of this model
_IGNORED_PREFIXES = ("cls.", "embeddings.position_ids")
_OPTIONAL = ("pooler.dense", "classifier")  # heads a checkpoint may carry that a task leaves out


@dataclasses.dataclass(frozen=True)
class BertConfig(HFConfig):
    """``BertConfig``'s architecture settings; the defaults are bert-base-uncased's."""

    FIXED = {"position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False}

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: float | None = None


def _output(spec: ModelSpec, prefix: str, source: str, residual: str, config: BertConfig) -> str:
    """Hugging Face's BertSelfOutput / BertOutput: Dense, dropout, residual add, LayerNorm."""
    spec.add("Dense", config.hidden_size, name=f"{prefix}.dense", inputs=source)
    spec.add("Dropout", config.hidden_dropout_prob, name=f"{prefix}.dropout")
    spec.add("Add", name=f"{prefix}.residual", inputs=[f"{prefix}.dropout", residual])
    spec.add("LayerNorm", eps=config.layer_norm_eps, name=f"{prefix}.LayerNorm")
    return f"{prefix}.LayerNorm"


def _encoder_layer(spec: ModelSpec, prefix: str, source: str, config: BertConfig) -> str:
    """Self-attention over the unpadded tokens, then the feed-forward block, each with its residual."""
    attention = f"{prefix}.attention.self"
    for role in ("query", "key", "value"):
        spec.add("Dense", config.hidden_size, name=f"{attention}.{role}", inputs=source)
    spec.add("Attention", config.num_attention_heads, dropout=config.attention_probs_dropout_prob, name=attention,
             inputs=[f"{attention}.query", f"{attention}.key", f"{attention}.value", "attention_mask"])
    attended = _output(spec, f"{prefix}.attention.output", attention, source, config)
    spec.add("Dense", config.intermediate_size, activation=activation(config.hidden_act, "hidden_act"),
             name=f"{prefix}.intermediate.dense", inputs=attended)
    return _output(spec, f"{prefix}.output", f"{prefix}.intermediate.dense", attended, config)


def bert(config: BertConfig = BertConfig(), task: str = "feature-extraction", num_labels: int = 2,
         logits: bool = False) -> ModelSpec:
    """BERT's spec: ``last_hidden_state`` out, or with ``task="text-classification"`` the pooler
    (Dense + tanh on ``[CLS]``) and a ``classifier`` of ``num_labels`` (softmax unless ``logits``)."""
    spec = ModelSpec()
    for name in ("input_ids", "attention_mask", "token_type_ids"):  # int64, as tokenizers give them
        spec.add_input(name, (None,), "int64", axes=["sequence_length"])
    spec.add("Embedding", config.hidden_size, vocab_size=config.vocab_size, name="embeddings.word_embeddings",
             inputs="input_ids")
    spec.add("PositionEmbedding", config.max_position_embeddings, name="embeddings.position_embeddings")
    spec.add("Embedding", config.hidden_size, vocab_size=config.type_vocab_size,
             name="embeddings.token_type_embeddings", inputs="token_type_ids")
    spec.add("Add", name="embeddings.sum",
             inputs=["embeddings.position_embeddings", "embeddings.token_type_embeddings"])
    spec.add("LayerNorm", eps=config.layer_norm_eps, name="embeddings.LayerNorm")
    node = spec.add("Dropout", config.hidden_dropout_prob, name="embeddings.dropout").last
    for index in range(config.num_hidden_layers):
        node = _encoder_layer(spec, f"encoder.layer.{index}", node, config)
    spec.add("Activation", "linear", name="last_hidden_state", inputs=node)  # names the graph's output
    if task != CLASSIFICATION:
        return spec.set_outputs("last_hidden_state")
    spec.add("TakeToken", 0, name="pooler.first_token", inputs=node)
    spec.add("Dense", config.hidden_size, activation="tanh", name="pooler.dense")
    dropout = config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout
    spec.add("Dropout", dropout, name="dropout")
    spec.add("Dense", num_labels, activation="linear" if logits else "softmax", name="classifier")
    return spec.set_outputs("classifier")


def hf_state_dict(state: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    """A Hugging Face BERT checkpoint with this spec's key names: no ``bert.`` prefix, LayerNorm
    ``weight``/``bias``, without pre-training heads and without the heads the task leaves out."""
    layers = {layer.name for layer in spec.layers}
    out = {}
    for key, value in state.items():
        key = key.removeprefix("bert.")
        if key.endswith(".gamma") or key.endswith(".beta"):  # checkpoints from before PyTorch's names
            key = key.rpartition(".")[0] + (".weight" if key.endswith(".gamma") else ".bias")
        layer = key.rpartition(".")[0]
        if key.startswith(_IGNORED_PREFIXES) or (layer in _OPTIONAL and layer not in layers):
            continue
        out[key] = value
    return out


class Bert(TextModel):
    """A zoo BERT: a :class:`~llmasos.model.Model` with its config, tokenizer and :meth:`classify`."""

    config_class = BertConfig
    model_types = ("bert",)
    tasks = ("feature-extraction", CLASSIFICATION)
    hf_repo = "google-bert/bert-base-uncased"
    positions = "max_position_embeddings"
    build_spec = staticmethod(bert)

    @classmethod
    def heads(cls, task: str) -> tuple[str, ...]:
        return ("classifier",) if task == CLASSIFICATION else ()

    def classify(self, texts: str | Sequence[str]) -> list[str]:
        """The most likely label of each text (``text-classification`` models)."""
        if self.task != CLASSIFICATION:
            raise ZooError(f"classify needs a model loaded with task={CLASSIFICATION!r}, not {self.task!r}")
        scores = self.predict(self.encode(texts))
        return [self.metadata["labels"][i] for i in scores.argmax(axis=-1)]


register(name="bert", task="feature-extraction", input_size=(BertConfig.max_position_embeddings,), labels=None,
         classifier="classifier", adapt_state_dict=hf_state_dict, model_class=Bert)(bert)
