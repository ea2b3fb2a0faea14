"""Strings in, logits out: a tiny zoo BERT exported with its tokenizer, served by the real server,
tokenising server-side over JSON and the binary extension, against the zoo model itself."""

from __future__ import annotations

import json
import struct

import httpx
import numpy as np
import onnx
import pytest

from llmasos import export, zoo
from llmasos.cli import _render
from llmasos.export.metadata import TEXT_INPUTS, write_metadata
from llmasos.serve import Deployer

from .conftest import infer_json, outputs_of

pytestmark = pytest.mark.torch

MAX_LENGTH = 16
CONFIG = {"vocab_size": 20, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
          "intermediate_size": 32, "max_position_embeddings": MAX_LENGTH}
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad"] + [f"f{i}" for i in range(14)]
TEXTS = ["f1 good f2", "bad", "f3 f4 nice f5 f6 f7"]  # "nice" is unknown: [UNK]
LONG = " ".join(f"f{i % 14}" for i in range(30))  # 32 tokens with [CLS] and [SEP]: over MAX_LENGTH
ATOL = 1e-4


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tokenizer


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """The zoo model and a repository: ``bert`` (truncates) and ``strict`` (the same file with
    truncation turned off in its metadata)."""
    model = zoo.load("bert", "torch", config=CONFIG, task="text-classification", num_labels=3, logits=True,
                     tokenizer=_tokenizer(), seed=0)
    root = tmp_path_factory.mktemp("text-repo")
    path = root / "bert" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    export.to_onnx(model, path)
    proto = onnx.load(str(path))
    write_metadata(proto, {TEXT_INPUTS: {**json.loads(_prop(proto, TEXT_INPUTS)), "truncation": False}})
    (root / "strict" / "1").mkdir(parents=True)
    onnx.save(proto, str(root / "strict" / "1" / "model.onnx"))
    return model, root


def _prop(proto: onnx.ModelProto, key: str) -> str:
    return next(entry.value for entry in proto.metadata_props if entry.key == key)


@pytest.fixture(scope="module")
def server(bert):
    with Deployer(bert[1], port=0, poll_s=0) as deployer:
        yield deployer


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def _texts_json(texts: list[str]) -> dict:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def _texts_binary(elements: list[bytes]) -> tuple[bytes, dict[str, str]]:
    chunk = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    header = json.dumps({"inputs": [{"name": "text", "shape": [len(elements)], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(chunk)}}]}).encode()
    return header + chunk, {"Inference-Header-Content-Length": str(len(header))}


def test_the_file_carries_its_tokenizer_and_info_stays_short(bert):
    details = export.info(bert[1] / "bert" / "1" / "model.onnx")
    assert details["llmasos.tokenizer"] == "WordLevel tokenizer, vocab size 20"
    assert details[TEXT_INPUTS] == {"inputs": ["input_ids", "attention_mask", "token_type_ids"], "pad_id": 0,
                                    "max_length": MAX_LENGTH, "truncation": True}
    assert "[CLS]" not in _render(details)


def test_metadata_advertises_a_text_input(client):
    inputs = client.get("/v2/models/bert").json()["inputs"]
    assert [i["name"] for i in inputs] == ["input_ids", "attention_mask", "token_type_ids", "text"]
    assert inputs[-1] == {"name": "text", "datatype": "BYTES", "shape": [-1]}


def test_strings_over_json_and_binary_equal_the_zoo_model_and_the_ids(bert, client, server):
    model = bert[0]
    ids = model.encode(TEXTS)
    expected = model.predict(ids)
    by_json = outputs_of(client.post("/v2/models/bert/infer", json=_texts_json(TEXTS)))["classifier"]
    content, headers = _texts_binary([t.encode() for t in TEXTS])
    by_binary = outputs_of(client.post("/v2/models/bert/infer", content=content, headers=headers))["classifier"]
    datatypes = {"input_ids": "INT64", "attention_mask": "INT64", "token_type_ids": "INT64"}
    by_ids = outputs_of(client.post("/v2/models/bert/infer", json=infer_json("bert", ids, datatypes)))["classifier"]
    for served in (by_json, by_binary, by_ids, server.predict(TEXTS, model="bert")):
        np.testing.assert_allclose(served, expected, atol=ATOL, rtol=0)


def test_a_long_text_is_truncated_keeping_its_special_tokens(bert, client):
    kept = " ".join(LONG.split()[:MAX_LENGTH - 2])  # room for [CLS] and [SEP]
    served = outputs_of(client.post("/v2/models/bert/infer", json=_texts_json([LONG, "good"])))["classifier"]
    np.testing.assert_allclose(served, bert[0].predict(bert[0].encode([kept, "good"])), atol=ATOL, rtol=0)


BAD = {
    "not-utf8": ("bert", _texts_binary([b"good", b"\xff\xfe"]), "not UTF-8"),
    "empty-batch": ("bert", _texts_json([]), "no texts"),
    "too-long-without-truncation": ("strict", _texts_json(["good", LONG]), "has 32 tokens; the model takes at most 16"),
    "text-and-ids": ("bert", {"inputs": [*_texts_json(["good"])["inputs"],
                                         {"name": "input_ids", "shape": [1, 1], "datatype": "INT64", "data": [4]}]},
                     "not both"),
    "two-dimensional": ("bert", {"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES",
                                             "data": ["good"]}]}, "one text per row"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_texts_get_400_and_the_server_keeps_serving(client, case):
    name, body, message = BAD[case]
    if isinstance(body, tuple):
        response = client.post(f"/v2/models/{name}/infer", content=body[0], headers=body[1])
    else:
        response = client.post(f"/v2/models/{name}/infer", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert client.post(f"/v2/models/{name}/infer", json=_texts_json(["good"])).status_code == 200


def test_a_text_of_no_tokens_is_refused_before_the_model_sees_it():
    from tokenizers import Tokenizer, models

    from llmasos.errors import DataError
    from llmasos.texts import encode

    bare = Tokenizer(models.WordLevel({"[UNK]": 0, "good": 1}, unk_token="[UNK]"))  # no [CLS]/[SEP] added
    with pytest.raises(DataError, match="text 1 has no tokens"):
        encode(bare, ["good", ""], {"input_ids": "int64"})
