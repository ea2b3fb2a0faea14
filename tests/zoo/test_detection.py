"""YOLOS against transformers' ``YolosForObjectDetection`` with identical weights (a Hugging Face
folder the tests write with ``save_pretrained``), in torch, TensorFlow and ONNX Runtime; detect()
against transformers' image processor and ``post_process_object_detection``; the
``DetectionTokens`` layer in both adapters; served over real HTTP; bad input."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest

from llmasos import Model, export, zoo
from llmasos.errors import DataError, WeightsError, ZooError
from llmasos.serve import Deployer
from llmasos.spec import ModelSpec
from llmasos.zoo.detection import post_process
from llmasos.zoo.yolos import YOLOS

from ..conftest import framework_params

pytestmark = pytest.mark.torch  # the reference is transformers' torch model

ATOL = 1e-4
SIZE = (32, 48)   # (H, W): not square, so a swapped height and width cannot pass
SMALL = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 64,
         "image_size": list(SIZE), "patch_size": 8, "num_detection_tokens": 6, "num_labels": 3,
         "initializer_range": 0.2}
LABELS = {0: "cat", 1: "dog", 2: "fox"}
VARIANTS = {"base": {}, "plain": {"use_mid_position_embeddings": False, "qkv_bias": False, "hidden_act": "gelu_new"}}


def _images() -> list[np.ndarray]:
    """Three uint8 RGB images of other sizes and aspect ratios than the model's."""
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((40, 60, 3), (25, 30, 3), (64, 32, 3))]


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """Per variant: a random ``YolosForObjectDetection`` (norms, tokens and positions perturbed,
    so a wrong mapping cannot hide behind their initial values) saved as a folder, the module,
    and its outputs on two normalised images."""
    import torch
    import transformers

    pixels = np.random.default_rng(0).standard_normal((2, 3, *SIZE)).astype(np.float32)
    out = {"pixels": pixels}
    for variant, options in VARIANTS.items():
        folder = tmp_path_factory.mktemp(variant)
        torch.manual_seed(0)
        config = transformers.YolosConfig(**{**SMALL, **options}, id2label=LABELS)
        module = transformers.YolosForObjectDetection(config).eval()
        with torch.no_grad():
            for name, param in module.named_parameters():
                if "norm" in name or "token" in name or "position" in name:
                    param.add_(0.3 * torch.randn_like(param))
        module.save_pretrained(folder)
        with torch.inference_mode():
            result = module(torch.from_numpy(pixels))
        out[variant] = {"folder": folder, "module": module, "logits": result.logits.numpy(),
                        "boxes": result.pred_boxes.numpy()}
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("framework", framework_params())
def test_logits_and_boxes_match_transformers(framework, variant, hf):
    reference = hf[variant]
    model = zoo.load("yolos", framework, pretrained=reference["folder"])
    logits, boxes = model.predict(hf["pixels"])
    np.testing.assert_allclose(logits, reference["logits"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(boxes, reference["boxes"], atol=ATOL, rtol=0)
    assert logits.shape == (2, 6, 4) and boxes.shape == (2, 6, 4)
    assert np.abs(reference["logits"]).max() > 0.5 and reference["boxes"].std() > 0.01  # outputs of some size
    assert isinstance(model, YOLOS) and model.labels == ["cat", "dog", "fox"]


@pytest.mark.parametrize("framework", framework_params())
def test_other_image_sizes_interpolate_positions_as_transformers(framework, hf, tmp_path):
    """transformers interpolates the position tables (bicubic) on every call for pixels of another
    size; input_size does it once at load: the same outputs, larger, smaller and odd sizes."""
    import torch

    reference = hf["base"]
    for size in ((40, 64), (24, 32), (56, 47)):
        pixels = np.random.default_rng(2).standard_normal((2, 3, *size)).astype(np.float32)
        with torch.inference_mode():
            want = reference["module"](torch.from_numpy(pixels))
        model = zoo.load("yolos", framework, pretrained=reference["folder"], config={"input_size": list(size)})
        logits, boxes = model.predict(pixels)
        np.testing.assert_allclose(logits, want.logits.numpy(), atol=ATOL, rtol=0)
        np.testing.assert_allclose(boxes, want.pred_boxes.numpy(), atol=ATOL, rtol=0)
        assert model.image_size == size and model.detect(_images()[0], threshold=0.0)[0]["boxes"].shape == (6, 4)
    # saved, the model is a YOLOS at that size: its weights are the interpolated ones
    loaded = Model.load(model.save(tmp_path / "yolos.h5"), framework=framework)
    assert loaded.image_size == (56, 47) and loaded.config.image_size == SIZE
    np.testing.assert_allclose(loaded.predict(pixels)[0], want.logits.numpy(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("framework", framework_params())
def test_onnx_export_gives_the_same_outputs(framework, hf, tmp_path):
    reference = hf["base"]
    model = zoo.load("yolos", framework, pretrained=reference["folder"])
    export.to_onnx(model, tmp_path / "yolos.onnx")
    session = export.load(tmp_path / "yolos.onnx")
    assert [o.name for o in session.get_outputs()] == ["logits", "pred_boxes"]
    logits, boxes = session.run(None, {session.get_inputs()[0].name: hf["pixels"]})
    np.testing.assert_allclose(logits, reference["logits"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(boxes, reference["boxes"], atol=ATOL, rtol=0)
    one = session.run(None, {session.get_inputs()[0].name: hf["pixels"][:1]})[0]   # the batch size is free
    np.testing.assert_allclose(one, reference["logits"][:1], atol=ATOL, rtol=0)
    assert export.info(tmp_path / "yolos.onnx")["llmasos.detection"]["size"] == list(SIZE)


def _transformers_detections(module, images, threshold):
    """transformers' own route: its image processor at the model's size, the model, and
    ``post_process_object_detection`` with each image's size."""
    import torch
    from transformers.models.yolos.image_processing_pil_yolos import YolosImageProcessorPil

    processor = YolosImageProcessorPil(size={"height": SIZE[0], "width": SIZE[1]}, do_pad=False)
    inputs = processor(images=images, return_tensors="pt")
    with torch.inference_mode():
        outputs = module(inputs["pixel_values"])
    sizes = [image.shape[:2] for image in images]
    return inputs["pixel_values"].numpy(), processor.post_process_object_detection(outputs, threshold, sizes)


@pytest.mark.parametrize("framework", framework_params())
def test_detect_equals_transformers_processor_and_post_processing(framework, hf):
    from llmasos.zoo.detection import prepare_detection_images

    images = _images()
    _, every = _transformers_detections(hf["base"]["module"], images, 0.0)
    # a threshold amid the scores: it keeps some queries and drops others
    threshold = float(np.median(np.concatenate([f["scores"].numpy() for f in every])))
    want_pixels, want = _transformers_detections(hf["base"]["module"], images, threshold)
    pixels, sizes = prepare_detection_images(images, SIZE)
    np.testing.assert_allclose(pixels, want_pixels, atol=1e-5, rtol=0)
    assert sizes == [(40, 60), (25, 30), (64, 32)]
    found = zoo.load("yolos", framework, pretrained=hf["base"]["folder"]).detect(images, threshold=threshold)
    assert len(found) == 3
    kept = sum(len(f["scores"]) for f in found)
    assert 0 < kept < 3 * 6
    for got, reference in zip(found, want):
        np.testing.assert_array_equal(got["labels"], reference["labels"].numpy())
        np.testing.assert_allclose(got["scores"], reference["scores"].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(got["boxes"], reference["boxes"].numpy(), atol=1e-3, rtol=0)  # pixels
        assert got["names"] == [LABELS[int(i)] for i in got["labels"]]
        assert got["boxes"].dtype == np.float32 and got["labels"].dtype == np.int64


def test_post_process_equals_transformers_on_many_outputs():
    """Random logits and boxes, several thresholds, target sizes or none."""
    import torch
    from transformers.models.yolos.image_processing_pil_yolos import YolosImageProcessorPil
    from transformers.models.yolos.modeling_yolos import YolosObjectDetectionOutput

    rng = np.random.default_rng(1)
    logits = (2 * rng.standard_normal((3, 20, 6))).astype(np.float32)
    boxes = rng.random((3, 20, 4)).astype(np.float32)
    outputs = YolosObjectDetectionOutput(logits=torch.from_numpy(logits), pred_boxes=torch.from_numpy(boxes))
    processor = YolosImageProcessorPil()
    for threshold in (0.0, 0.3, 0.5, 0.9):
        for sizes in ([(480, 640), (100, 50), (33, 77)], None):
            want = processor.post_process_object_detection(outputs, threshold, sizes)
            got = post_process(logits, boxes, threshold, sizes)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g["labels"], w["labels"].numpy())
                np.testing.assert_allclose(g["scores"], w["scores"].numpy(), atol=1e-6, rtol=0)
                np.testing.assert_allclose(g["boxes"], w["boxes"].numpy(), atol=1e-4, rtol=1e-6)
    assert sum(len(g["scores"]) for g in post_process(logits, boxes, 0.5)) > 0


@pytest.mark.parametrize("framework", framework_params())
def test_detection_tokens_are_put_last_in_both_adapters(framework):
    spec = ModelSpec().add_input("x", (3, 4))
    spec.add("DetectionTokens", name="det", count=2)
    model = Model(spec=spec, framework=framework)
    model.build(seed=0)
    tokens = np.arange(8, dtype=np.float32).reshape(2, 4) + 0.5
    model.set_weights({"det": {"tokens": tokens}})
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), np.concatenate([x, np.broadcast_to(tokens, (2, 2, 4))], axis=1))
    assert spec.shapes()["det"] == (5, 4)


def test_detection_tokens_start_alike_in_both_frameworks():
    frameworks = [p.values[0] for p in framework_params()]
    if len(frameworks) < 2:
        pytest.skip("needs both torch and TensorFlow installed")
    spec = ModelSpec().add_input("x", (3, 4))
    spec.add("DetectionTokens", name="det", count=2)
    models = [Model(spec=spec, framework=fw) for fw in frameworks]
    for model in models:
        model.build(seed=3)
    np.testing.assert_array_equal(*(m.get_weights()["det"]["tokens"] for m in models))
    assert np.abs(models[0].get_weights()["det"]["tokens"]).max() > 0   # drawn, not zeros


def test_the_default_yolos_has_transformers_parameter_count():
    import torch
    import transformers

    with torch.device("meta"):
        module = transformers.YolosForObjectDetection(transformers.YolosConfig(num_labels=91))
    assert zoo.registry.get("yolos").parameter_count == sum(p.numel() for p in module.parameters())


def test_a_saved_yolos_loads_as_a_yolos_in_the_other_framework(hf, tmp_path):
    model = zoo.load("yolos", "torch", pretrained=hf["base"]["folder"])
    path = model.save(tmp_path / "yolos.h5")
    other = "tf" if "tf" in [p.values[0] for p in framework_params()] else "torch"
    loaded = Model.load(path, framework=other)
    assert isinstance(loaded, YOLOS) and loaded.image_size == SIZE and loaded.labels == ["cat", "dog", "fox"]
    np.testing.assert_allclose(loaded.predict(hf["pixels"])[1], hf["base"]["boxes"], atol=ATOL, rtol=0)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(hf, tmp_path_factory):
    model = zoo.load("yolos", "torch", pretrained=hf["base"]["folder"])
    path = tmp_path_factory.mktemp("served") / "yolos.onnx"
    export.to_onnx(model, path)
    with Deployer(path, port=0, poll_s=0) as deployer, httpx.Client(base_url=deployer.url, timeout=30) as client:
        yield model, deployer, client


def _image_request(images: list[bytes], threshold: float | None = None, **extra) -> dict:
    inputs = [{"name": "image", "shape": [len(images)], "datatype": "BYTES",
               "data": [base64.b64encode(image).decode() for image in images]}]
    if threshold is not None:
        inputs.append({"name": "threshold", "shape": [1], "datatype": "FP32", "data": [threshold]})
    return {"inputs": inputs, **extra}


def test_the_server_detects_on_image_files_over_http(served):
    model, deployer, client = served
    images = _images()
    threshold = float(np.median(np.concatenate([f["scores"] for f in model.detect(images, threshold=0.0)])))
    want = model.detect(images, threshold=threshold)
    metadata = client.get("/v2/models/yolos").json()
    assert {"name": "image", "datatype": "BYTES", "shape": [-1]} in metadata["inputs"]
    assert [o["name"] for o in metadata["outputs"]] == ["logits", "pred_boxes", "boxes", "scores", "labels", "names",
                                                        "image_index"]
    response = client.post("/v2/models/yolos/infer", json=_image_request([_png(i) for i in images], threshold))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert set(outputs) == {"boxes", "scores", "labels", "names", "image_index"}   # the raw outputs left out
    index = np.array(outputs["image_index"]["data"])
    boxes = np.array(outputs["boxes"]["data"]).reshape(outputs["boxes"]["shape"])
    assert 0 < len(index) == sum(len(f["labels"]) for f in want) < 3 * 6
    for i, found in enumerate(want):
        np.testing.assert_allclose(boxes[index == i], found["boxes"], atol=1e-3, rtol=0)
        np.testing.assert_allclose(np.array(outputs["scores"]["data"])[index == i], found["scores"], atol=1e-5)
        assert np.array(outputs["names"]["data"])[index == i].tolist() == found["names"]
    # the default threshold is 0.5, and raw outputs come when named
    response = client.post("/v2/models/yolos/infer", json=_image_request([_png(images[0])], outputs=[
        {"name": "scores"}, {"name": "logits"}]))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["logits"]["shape"] == [1, 6, 4]
    np.testing.assert_allclose(outputs["scores"]["data"], model.detect(images[0], threshold=0.5)[0]["scores"],
                               atol=1e-5)
    in_process = deployer.predict({"image": [_png(images[1])]})
    np.testing.assert_allclose(in_process["boxes"], model.detect(images[1])[0]["boxes"], atol=1e-3)


@pytest.mark.parametrize("request_body, message", [
    (_image_request([b"not an image at all"]), "row 0: 19 bytes: not an image file PIL can read"),
    ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%% not base64"]}]},
     "row 0: not base64 text"),
    (_image_request([_png(np.zeros((8, 8, 3), np.uint8))], threshold=1.5),
     "threshold must be a number between 0 and 1"),
])
def test_the_server_refuses_bad_images_and_thresholds(served, request_body, message):
    response = served[2].post("/v2/models/yolos/infer", json=request_body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_the_server_refuses_boxes_for_raw_pixels_and_a_wrong_pixel_size(served):
    client = served[2]
    pixels = np.zeros((1, 3, *SIZE), np.float32)
    body = {"inputs": [{"name": "pixel_values", "shape": list(pixels.shape), "datatype": "FP32",
                        "data": pixels.reshape(-1).tolist()}], "outputs": [{"name": "boxes"}]}
    response = client.post("/v2/models/yolos/infer", json=body)
    assert response.status_code == 400 and "come with images: send 'image'" in response.json()["error"]
    body["inputs"][0]["shape"] = [1, 3, SIZE[1], SIZE[0]]
    response = client.post("/v2/models/yolos/infer", json={"inputs": body["inputs"]})
    assert response.status_code == 400 and "[-1, 3, 32, 48]" in response.json()["error"]


@pytest.mark.parametrize("images, error, message", [
    ("no/such/image.png", DataError, r"no/such/image.png is not a file; detect\(\) takes images"),
    (b"\x89PNG but cut short", DataError, "not an image file PIL can read"),
    (np.zeros((4, 4, 5), np.uint8), DataError, r"an image array must be \(H, W\), \(H, W, 1\), \(H, W, 3\)"),
    (np.zeros((4, 4, 3), np.int32), DataError, "image arrays must be uint8"),
    ([], DataError, "no images given"),
])
def test_detect_refuses_what_is_not_an_image(hf, images, error, message):
    model = zoo.load("yolos", "torch", pretrained=hf["base"]["folder"])
    with pytest.raises(error, match=message):
        model.detect(images)


@pytest.mark.parametrize("threshold", [-0.1, 1.01, True, "0.5", None])
def test_detect_refuses_a_threshold_outside_0_1(hf, threshold):
    model = zoo.load("yolos", "torch", pretrained=hf["base"]["folder"])
    with pytest.raises(DataError, match=r"threshold must be a number between 0 and 1"):
        model.detect(_images()[0], threshold=threshold)


def test_pixels_of_the_wrong_size_and_other_image_sizes_are_refused(hf):
    model = zoo.load("yolos", "torch", pretrained=hf["base"]["folder"])
    with pytest.raises(DataError, match=r"expects shape \(batch, 3, 32, 48\)"):
        model.predict(np.zeros((1, 3, 48, 32), np.float32))
    with pytest.raises(WeightsError, match=r"position_embeddings.weight has 31 positions, but image_size \(48, 48\) "
                                           r".* makes 43: .* set input_size"):
        zoo.load("yolos", "torch", pretrained=hf["base"]["folder"], config={"image_size": [48, 48]})
    with pytest.raises(ZooError, match="YOLOS takes images: it has no tokenizer"):
        zoo.load("yolos", "torch", config=SMALL, tokenizer="tokenizer.json")
    with pytest.raises(ZooError, match=r"image_size must be a positive int or \(height, width\)"):
        zoo.load("yolos", "torch", config={**SMALL, "image_size": [32, 48, 3]})
