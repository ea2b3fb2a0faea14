"""Face recognition (#16): InceptionResnetV1 against facenet-pytorch's own module with the same
random weights (where facenet-pytorch is installed: ``pip install --no-deps facenet-pytorch``, its
pins ask for torch < 2.3), layer-by-layer shapes and the parameter count of the published
architecture, torch vs TF vs ONNX Runtime on the tiny variant, the embed/verify/identify API and
its errors, and embeddings served over real HTTP."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from llmasos import Model, export, zoo
from llmasos.errors import DataError, ZooError
from llmasos.serve import Deployer
from llmasos.zoo import facenet

from ..conftest import FRAMEWORKS
from ..serve.conftest import infer_json, outputs_of
from ..test_parity import randomized_weights

ATOL = 1e-4           # DESIGN.md: zoo models agree to 1e-4 (fp32)
SMALL = 96            # a face size every stage fits (75 is the least) for the fast full-model checks
TINY = (80, 80)       # facenet_tiny's faces

# facenet-pytorch's InceptionResnetV1 at 160x160: each module's output shape (C, H, W), and the
# spec layer that gives it
PUBLISHED_SHAPES = {
    "conv2d_1a": ("conv2d_1a.relu", (32, 79, 79)), "conv2d_2a": ("conv2d_2a.relu", (32, 77, 77)),
    "conv2d_2b": ("conv2d_2b.relu", (64, 77, 77)), "maxpool_3a": ("maxpool_3a", (64, 38, 38)),
    "conv2d_3b": ("conv2d_3b.relu", (80, 38, 38)), "conv2d_4a": ("conv2d_4a.relu", (192, 36, 36)),
    "conv2d_4b": ("conv2d_4b.relu", (256, 17, 17)), "repeat_1": ("repeat_1.4.relu", (256, 17, 17)),
    "mixed_6a": ("mixed_6a", (896, 8, 8)), "repeat_2": ("repeat_2.9.relu", (896, 8, 8)),
    "mixed_7a": ("mixed_7a", (1792, 3, 3)), "repeat_3": ("repeat_3.4.relu", (1792, 3, 3)),
    "block8": ("block8.add", (1792, 3, 3)), "avgpool_1a": ("avgpool_1a", (1792,)),
    "last_linear": ("last_linear", (512,)), "last_bn": ("last_bn", (512,)),
}
PUBLISHED_PARAMETERS = 23_482_624  # sum(p.numel() for p in InceptionResnetV1().parameters())


def _faces(count: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Random uint8 RGB "photos" (count, H, W, 3), as images load."""
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def _facenet_pytorch():
    return pytest.importorskip("facenet_pytorch", reason="facenet-pytorch is not installed (optional reference: "
                                                         "pip install --no-deps facenet-pytorch)")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``reference(size) -> (checkpoint, standardised faces, embeddings)``: facenet-pytorch's
    InceptionResnetV1 with random weights made realistic (BatchNorm affines and running statistics
    away from 1 and 0, non-zero conv biases, so a wrong mapping cannot hide), saved as a state
    dict, and its embeddings of two random faces."""
    _facenet_pytorch()
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    module = InceptionResnetV1().eval()
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.normal_(0.0, 0.1)
                layer.running_mean.normal_(0.0, 0.1)
                layer.running_var.uniform_(0.5, 1.5)
            elif isinstance(layer, torch.nn.Conv2d) and layer.bias is not None:
                layer.bias.normal_(0.0, 0.05)
    path = tmp_path_factory.mktemp("facenet") / "facenet.pt"
    torch.save(module.state_dict(), path)
    made = {}

    def make(size: int):
        if size not in made:
            faces = facenet.standardize(_faces(2, (size, size)).transpose(0, 3, 1, 2))
            with torch.inference_mode():
                made[size] = (path, faces, module(torch.from_numpy(faces)).numpy())
        return made[size]

    make.module = module
    return make


# -- the published architecture, without a framework -------------------------------------------


def test_parameter_count_and_layer_shapes_are_the_published_ones():
    info = zoo.registry.get("facenet")
    assert info.parameter_count == PUBLISHED_PARAMETERS
    shapes = info.spec().shapes()
    assert {module: shapes[layer] for module, (layer, _) in PUBLISHED_SHAPES.items()} == \
        {module: shape for module, (_, shape) in PUBLISHED_SHAPES.items()}
    assert shapes["normalize"] == (512,) and info.spec().outputs == ["normalize"]
    # the tiny variant keeps the layout at an eighth of the width
    tiny = zoo.registry.get("facenet_tiny").spec().shapes()
    assert tiny["mixed_6a"][0] == 896 // 8 and tiny["mixed_7a"][0] == 1792 // 8 and tiny["normalize"] == (512,)


@pytest.mark.torch
def test_layer_shapes_equal_facenet_pytorchs_modules():
    _facenet_pytorch()
    import torch
    from facenet_pytorch import InceptionResnetV1

    module = InceptionResnetV1().eval()
    seen = {}
    for name in PUBLISHED_SHAPES:
        getattr(module, name).register_forward_hook(lambda _, __, out, name=name: seen.__setitem__(name, out.shape))
    with torch.inference_mode():
        module(torch.zeros(1, 3, 160, 160))
    shapes = zoo.registry.get("facenet").spec().shapes()
    for name, (layer, _) in PUBLISHED_SHAPES.items():
        # AdaptiveAvgPool2d keeps (C, 1, 1), which facenet-pytorch's forward then flattens
        assert tuple(seen[name][1:4 if name != "avgpool_1a" else 2]) == shapes[layer], name
    assert sum(p.numel() for p in module.parameters()) == PUBLISHED_PARAMETERS


# -- equal to facenet-pytorch -------------------------------------------------------------------


def _fast_in_torch() -> list:
    # the full model takes a minute to build in TensorFlow (23.5M parameters): slow there
    return [pytest.param(name, marks=[pytest.mark.slow] if name != "torch" else []) for name in FRAMEWORKS]


@pytest.mark.torch
@pytest.mark.parametrize("framework", _fast_in_torch())
def test_same_embeddings_as_facenet_pytorch(framework, reference):
    path, faces, expected = reference(SMALL)
    model = zoo.load("facenet", framework, pretrained=path, input_size=SMALL)
    assert isinstance(model, facenet.FaceNet) and model.metadata["family"] == "facenet"
    got = model.predict(faces)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_same_embeddings_as_facenet_pytorch_at_160(framework, reference, tmp_path):
    path, faces, expected = reference(160)
    model = zoo.load("facenet", framework, pretrained=path)
    np.testing.assert_allclose(model.predict(faces), expected, atol=ATOL, rtol=0)
    report = export.to_onnx(model, tmp_path / "facenet.onnx")
    assert report.verified
    session = ort.InferenceSession(str(tmp_path / "facenet.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: faces})[0], expected,
                               atol=ATOL, rtol=0)


@pytest.mark.torch
@pytest.mark.slow
def test_onnx_export_keeps_facenet_pytorchs_embeddings(reference, tmp_path):
    path, faces, expected = reference(SMALL)
    model = zoo.load("facenet", "torch", pretrained=path, input_size=SMALL)
    export.to_onnx(model, tmp_path / "facenet.onnx")
    session = ort.InferenceSession(str(tmp_path / "facenet.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: faces})[0], expected,
                               atol=ATOL, rtol=0)


def test_the_published_checkpoints_classifier_is_left_out():
    state = {"last_linear.weight": np.zeros((512, 1792), np.float32), "logits.weight": np.zeros((8631, 512)),
             "logits.bias": np.zeros(8631)}
    assert set(facenet.facenet_state_dict(state, zoo.registry.get("facenet").spec())) == {"last_linear.weight"}


# -- torch vs TF vs ONNX on the tiny variant ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """facenet_tiny in torch with random, realistic weights (BatchNorm statistics away from 0/1)."""
    model = zoo.load("facenet_tiny", "torch", seed=0)
    model.set_weights(randomized_weights(model.spec, seed=3))
    return model


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    """facenet_tiny exported from torch, in a server repository's layout (``faces/1/model.onnx``)."""
    path = tmp_path_factory.mktemp("faces-repo") / "faces" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    export.to_onnx(tiny, path)
    return path


@pytest.mark.torch
@pytest.mark.tf
def test_tiny_agrees_in_torch_tf_and_onnx(tiny, tiny_onnx, tmp_path):
    faces = _faces(3, TINY, seed=1)
    expected = tiny.embed(faces)
    in_tf = tiny.to("tf")
    assert isinstance(in_tf, facenet.FaceNet) and in_tf.framework == "tf"
    np.testing.assert_allclose(in_tf.embed(faces), expected, atol=1e-5, rtol=0)
    export.to_onnx(in_tf, tmp_path / "tf.onnx")
    for source, path in ((tiny, tiny_onnx), (in_tf, tmp_path / "tf.onnx")):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: tiny.prepare(faces)})[0]
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, err_msg=source.framework)


@pytest.mark.torch
def test_saved_face_model_comes_back_as_one(tiny, tmp_path):
    tiny.save(tmp_path / "face.h5")
    again = Model.load(tmp_path / "face.h5", framework="torch")
    assert isinstance(again, facenet.FaceNet)
    faces = _faces(2, TINY, seed=2)
    np.testing.assert_array_equal(again.embed(faces), tiny.embed(faces))
    assert again.threshold == facenet.THRESHOLD


@pytest.mark.torch
def test_a_chosen_threshold_is_kept_by_save_load_and_to(tiny, tmp_path):
    tiny.save(tmp_path / "face.h5")
    face = Model.load(tmp_path / "face.h5", framework="torch")
    face.threshold = 0.25
    face.save(tmp_path / "chosen.h5")
    again = Model.load(tmp_path / "chosen.h5", framework="torch")
    assert again.threshold == 0.25
    a, b = _faces(2, TINY, seed=3)
    assert again.verify(a, b) == face.verify(a, b, threshold=0.25)
    assert face.to("tf").threshold == 0.25
    with pytest.raises(DataError, match="threshold must be a non-negative number"):
        face.threshold = -1.0


# -- embed, verify, identify --------------------------------------------------------------------


@pytest.mark.torch
def test_embed_standardises_pixels_as_facenet(tiny):
    faces = _faces(2, TINY)
    chw = faces.transpose(0, 3, 1, 2)
    expected = tiny.predict((chw.astype(np.float32) - 127.5) / 128.0)
    embeddings = tiny.embed(faces)
    assert embeddings.shape == (2, 512) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(embeddings, expected, atol=1e-6)
    # the same faces as a list of HWC arrays, channels first (MTCNN(post_process=False)), PIL
    # images, and already standardised (MTCNN's default output)
    from PIL import Image

    for same in ([faces[0], faces[1]], chw.astype(np.float32), [Image.fromarray(f) for f in faces]):
        np.testing.assert_allclose(tiny.embed(same), expected, atol=1e-6)
    np.testing.assert_allclose(tiny.embed(facenet.standardize(chw), standardized=True), expected, atol=1e-6)
    # a grey face is its value in R, G and B
    grey = faces[0, ..., 0]
    np.testing.assert_allclose(tiny.embed(grey), tiny.embed(np.repeat(grey[..., None], 3, axis=-1)), atol=1e-6)


@pytest.mark.torch
def test_verify_and_identify(tiny):
    a, b, c = _faces(3, TINY, seed=4)
    ea, eb, ec = tiny.embed([a, b, c])
    same, distance = tiny.verify(a, a)
    assert same is True and distance == pytest.approx(0.0, abs=1e-6)
    between = float(np.linalg.norm(ea - eb))
    # a face or its embedding, either side, gives the same distance
    for left, right in ((a, b), (ea, b), (a, eb), (ea, eb)):
        assert tiny.verify(left, right, threshold=between + 1e-4) == (True, pytest.approx(between, abs=1e-5))
        assert tiny.verify(left, right, threshold=between - 1e-4) == (False, pytest.approx(between, abs=1e-5))
    assert tiny.threshold == facenet.THRESHOLD == 1.04
    assert tiny.verify(a, b)[0] is (between <= 1.04)
    # identify: the nearest entry within the threshold, images and embeddings alike
    gallery = {"a": ea, "b": b, "c": ec}
    assert tiny.identify(a, gallery) == "a" and tiny.identify(eb, gallery) == "b"
    nearest = min(("b", "c"), key=lambda name: np.linalg.norm({"b": eb, "c": ec}[name] - ea))
    far = min(np.linalg.norm(eb - ea), np.linalg.norm(ec - ea))
    assert tiny.identify(a, {"b": eb, "c": c}, threshold=far + 1e-4) == nearest
    assert tiny.identify(a, {"b": eb, "c": c}, threshold=far - 1e-4) is None


@pytest.mark.torch
def test_bad_faces_and_options_get_clear_errors(tiny):
    with pytest.raises(DataError, match=r"faces must be 80x80 .* got 64x80"):
        tiny.embed(np.zeros((64, 80, 3), np.uint8))
    with pytest.raises(DataError, match="a face must be an image: a PIL image or an array of pixels"):
        tiny.embed("alice.jpg")
    with pytest.raises(DataError, match="3 colour channels"):
        tiny.embed(np.zeros((1, 4, 80, 80), np.float32))
    with pytest.raises(DataError, match="pixels must be numbers"):
        tiny.embed(np.full((80, 80, 3), "x"))
    with pytest.raises(DataError, match="no faces given"):
        tiny.embed([])
    with pytest.raises(DataError, match="NaN"):
        tiny.embed(np.full((80, 80, 3), np.nan, np.float32))
    face = _faces(1, TINY)[0]
    with pytest.raises(DataError, match="an embedding must be 512 finite numbers"):
        tiny.verify(face, np.zeros(128, np.float32))
    with pytest.raises(DataError, match="threshold must be a non-negative number"):
        tiny.verify(face, face, threshold=-1)
    with pytest.raises(DataError, match="gallery must be a non-empty dict"):
        tiny.identify(face, {})
    with pytest.raises(ZooError, match="num_classes does not apply"):
        zoo.load("facenet_tiny", "torch", num_classes=10)
    with pytest.raises(ZooError, match="logits does not apply"):
        zoo.load("facenet_tiny", "torch", logits=True)
    with pytest.raises(ZooError, match="at least 75x75"):
        zoo.registry.get("facenet").spec(input_size=64)


# -- served -------------------------------------------------------------------------------------


@pytest.mark.torch
def test_served_model_returns_the_embeddings_of_a_face(tiny, tiny_onnx):
    """A face's standardised pixels over real HTTP on loopback, its embedding back."""
    faces = _faces(2, TINY, seed=5)
    with Deployer(tiny_onnx.parents[2], port=0, poll_s=0) as deployer, \
            httpx.Client(base_url=deployer.url, timeout=30) as client:
        metadata = client.get("/v2/models/faces").json()
        assert metadata["outputs"][0]["shape"] == [-1, 512]
        name = metadata["inputs"][0]["name"]
        got = outputs_of(client.post("/v2/models/faces/infer", json=infer_json("faces", {name: tiny.prepare(faces)})))
    (embeddings,) = got.values()
    np.testing.assert_allclose(embeddings, tiny.embed(faces), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def _png(pixels: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.mark.torch
def test_served_model_embeds_face_image_files(tiny, tiny_onnx):
    """Image files (base64 PNG) over real HTTP: the server standardises them as embed() does; a
    crop of another size is a 400 naming the size the file says."""
    assert export.info(tiny_onnx)["llmasos.faces"] == {"task": "face-embedding", "size": [80, 80], "mean": 127.5,
                                                       "scale": 128.0, "threshold": 1.04}
    faces = _faces(2, TINY, seed=6)
    images = {"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": [_png(f) for f in faces]}]}
    with Deployer(tiny_onnx.parents[2], port=0, poll_s=0) as deployer, \
            httpx.Client(base_url=deployer.url, timeout=30) as client:
        metadata = client.get("/v2/models/faces").json()
        assert {"name": "image", "datatype": "BYTES", "shape": [-1]} in metadata["inputs"]
        (embeddings,) = outputs_of(client.post("/v2/models/faces/infer", json=images)).values()
        wrong = client.post("/v2/models/faces/infer", json={"inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "data": [_png(_faces(1, (64, 80))[0])]}]})
        junk = client.post("/v2/models/faces/infer", json={"inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "data": ["bm90IGFuIGltYWdl"]}]})
    np.testing.assert_allclose(embeddings, tiny.embed(faces), atol=1e-5)
    assert wrong.status_code == 400 and "a face must be 80x80" in wrong.json()["error"] and "64x80" in wrong.json()["error"]
    assert junk.status_code == 400 and "not an image file" in junk.json()["error"]
