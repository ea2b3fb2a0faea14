"""Derived files of a model whose position table is shorter than the length reports time at
(128): the sample length is halved to fit, so quantize, to_fp16 and optimize verify and time it."""

from __future__ import annotations

import pytest

from llmasos import export, zoo
from llmasos.errors import VerificationError
from llmasos.spec import ModelSpec

BERT = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 16}


def test_fitting_length_stays_between_the_receptive_field_and_the_position_table():
    spec = (ModelSpec.sequential((8, None)).add("Conv1D", 8, kernel_size=5).add("Permute", [2, 1])
            .add("PositionEmbedding", 16))  # lengths 5 to 20 fit
    assert spec.fitting_length(2) == 8     # doubled: a length 2 or 4 is shorter than the kernel
    assert spec.fitting_length(128) == 16  # halved: 128 positions outgrow the table of 16
    assert spec.fitting_length(10) == 10   # kept: it fits both


# to_fp16 now times and verifies at length 16, but this random-weight BERT's fp16 copy differs by
# ~4% of the largest output (above the 1% fp16 tolerance): a separate issue, kept visible here.
FP16_OFF = pytest.mark.xfail(raises=VerificationError, strict=True, reason="fp16 BERT outside the fp16 tolerance")


@pytest.mark.torch
@pytest.mark.parametrize("derive", ["quantize", pytest.param("to_fp16", marks=FP16_OFF), "optimize"])
def test_derived_files_of_a_short_position_table_verify(tmp_path, derive):
    source = tmp_path / "bert.onnx"
    export.to_onnx(zoo.load("bert", "torch", config=BERT), source)
    report = getattr(export, derive)(source, tmp_path / f"{derive}.onnx")
    assert (tmp_path / f"{derive}.onnx").exists() or report.method.startswith("none")
    assert report.latency_ms  # timed at a length the table takes
