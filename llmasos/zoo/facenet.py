"""Face recognition: InceptionResnetV1 (Szegedy et al., 2016; FaceNet, Schroff et al., 2015) as
facenet-pytorch defines it, in the neutral spec, and :class:`FaceNet`, a Model that embeds,
verifies and identifies faces.

The network maps an aligned, cropped face (160x160 for the published weights) to a 512-d vector
of unit length; two photos of one person lie close together. Layer names are facenet-pytorch's
module names (``conv2d_1a.conv``, ``repeat_1.0.branch1.1.bn``, ``last_linear``, ``last_bn``), so
its state dicts (``InceptionResnetV1().state_dict()``, or the ``20180402-114759-vggface2.pt``
checkpoint converted from David Sandberg's TensorFlow facenet) map onto them key by key; the
checkpoint's ``logits`` classifier (VGGFace2's 8,631 identities) is not part of an embedder and is
left out.

**Preprocessing** is facenet's ``fixed_image_standardization``: ``(pixels - 127.5) / 128`` on RGB
pixels 0-255, with no resizing or cropping (faces come cropped and aligned from a detector, e.g.
facenet-pytorch's ``MTCNN(image_size=160)``). :meth:`FaceNet.embed` does it; ``model.predict``
and the exported ONNX file take the standardised ``(N, 3, H, W)`` tensor ``faces``, as
facenet-pytorch's module does. The file says so in its metadata (``llmasos.faces``), so the
Deployer also takes face image files (``image``, base64 PNG/JPEG) and answers their embeddings
(:mod:`llmasos.serve.faces`).

**Threshold.** Two faces are the same person when the Euclidean distance between their
embeddings is at most :data:`THRESHOLD` = 1.04 (squared: 1.0816; cosine similarity
``1 - 1.04**2 / 2`` = 0.459): deepface's tuned threshold for "Facenet512" on ``euclidean_l2``
(``deepface/config/threshold.py``), which is this network with Sandberg's 20180402-114759
VGGFace2 weights, the ones facenet-pytorch publishes as ``pretrained="vggface2"``. It is
meaningless for random weights; pass ``threshold=`` for weights of your own.

>>> from llmasos import zoo
>>> info = zoo.registry.get("facenet")
>>> f"{info.parameter_count:,}", info.spec().shapes()["repeat_3.4.relu"], info.spec().shapes()["normalize"]
('23,482,624', (1792, 3, 3), (512,))

::

    face = zoo.load("facenet", framework="torch", pretrained="20180402-114759-vggface2.pt")
    face.embed([alice_1, alice_2, bob])                # (3, 512), unit rows; uint8 (160, 160, 3) crops
    face.verify(alice_1, alice_2)                      # (True, 0.61)
    face.identify(bob, {"alice": face.embed(alice_1)[0], "bob": bob_photo})    # "bob", or None
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError, ZooError
from ..model import Model
from ..spec import ModelSpec
from .registry import WeightSource, register

TASK = "face-embedding"
THRESHOLD = 1.04
"""The default verification threshold on the Euclidean (L2) distance of two unit embeddings:
deepface's for Facenet512 (Sandberg's 20180402-114759 VGGFace2 weights); see the module's text."""
EMBEDDING_SIZE = 512
MEAN, SCALE = 127.5, 128.0  # facenet's fixed_image_standardization: (pixels - 127.5) / 128
BN_EPS = 1e-3               # facenet-pytorch's BatchNorm eps ("value found in tensorflow"); momentum 0.1
MIN_SIZE = 75               # the smallest square input every stride-2 stage of the stem still fits

# facenet-pytorch's published checkpoint: $TORCH_HOME/checkpoints (not hub/checkpoints) is where it
# caches it; pretrained= takes the file's path, or its name when it lies in torchvision's cache
VGGFACE2 = WeightSource("20180402-114759-vggface2.pt",
                        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
                        "20180402-114759-vggface2.pt",
                        fetched_by="facenet_pytorch.InceptionResnetV1(pretrained='vggface2') (into $TORCH_HOME/checkpoints)")


def standardize(pixels: Any) -> np.ndarray:
    """facenet's ``fixed_image_standardization``: ``(pixels - 127.5) / 128`` as float32.

    >>> standardize(np.array([0, 127.5, 255])).tolist()
    [-0.99609375, 0.0, 0.99609375]
    """
    return ((np.asarray(pixels, dtype=np.float32) - np.float32(MEAN)) / np.float32(SCALE)).astype(np.float32)


# -- the architecture ---------------------------------------------------------------------------


class _Builder:
    """Adds facenet-pytorch's modules to a spec, every channel count divided by ``divisor``
    (1 for the published network; the test variant uses 8)."""

    def __init__(self, spec: ModelSpec, divisor: int) -> None:
        self.spec, self.divisor = spec, divisor

    def width(self, channels: int) -> int:
        return channels // self.divisor

    def conv(self, name: str, source: str, channels: int, kernel: Any, stride: int = 1, padding: Any = 0) -> str:
        """``BasicConv2d``: a bias-free conv, BatchNorm (eps 1e-3), ReLU."""
        self.spec.add("Conv2D", self.width(channels), kernel_size=kernel, stride=stride, padding=padding,
                      use_bias=False, name=f"{name}.conv", inputs=source)
        self.spec.add("BatchNorm", eps=BN_EPS, name=f"{name}.bn")
        return self.spec.add("Activation", "relu", name=f"{name}.relu").last

    def chain(self, name: str, source: str, convs: Sequence[tuple]) -> str:
        """An ``nn.Sequential`` of BasicConv2d: each ``(channels, kernel, stride, padding)``."""
        for index, args in enumerate(convs):
            source = self.conv(f"{name}.{index}", source, *args)
        return source

    def residual(self, name: str, source: str, branches: list[str], channels: int, scale: float,
                 relu: bool = True) -> str:
        """The Inception-ResNet join: concatenate the branches, a 1x1 conv (with bias) back to the
        block's width, ``out * scale + x`` and (except in the last block) a ReLU."""
        self.spec.add("Concatenate", axis=1, name=f"{name}.cat", inputs=branches)
        out = self.spec.add("Conv2D", self.width(channels), kernel_size=1, name=f"{name}.conv2d").last
        if scale != 1.0:
            out = self.spec.add("Rescaling", scale, name=f"{name}.scale").last
        out = self.spec.add("Add", name=f"{name}.add", inputs=[out, source]).last
        return self.spec.add("Activation", "relu", name=f"{name}.relu").last if relu else out

    def block35(self, name: str, x: str, scale: float) -> str:
        branches = [self.conv(f"{name}.branch0", x, 32, 1),
                    self.chain(f"{name}.branch1", x, [(32, 1), (32, 3, 1, 1)]),
                    self.chain(f"{name}.branch2", x, [(32, 1), (32, 3, 1, 1), (32, 3, 1, 1)])]
        return self.residual(name, x, branches, 256, scale)

    def block17(self, name: str, x: str, scale: float) -> str:
        branches = [self.conv(f"{name}.branch0", x, 128, 1),
                    self.chain(f"{name}.branch1", x, [(128, 1), (128, (1, 7), 1, [0, 3]), (128, (7, 1), 1, [3, 0])])]
        return self.residual(name, x, branches, 896, scale)

    def block8(self, name: str, x: str, scale: float, relu: bool = True) -> str:
        branches = [self.conv(f"{name}.branch0", x, 192, 1),
                    self.chain(f"{name}.branch1", x, [(192, 1), (192, (1, 3), 1, [0, 1]), (192, (3, 1), 1, [1, 0])])]
        return self.residual(name, x, branches, 1792, scale, relu)

    def mixed_6a(self, x: str) -> str:
        branches = [self.conv("mixed_6a.branch0", x, 384, 3, 2),
                    self.chain("mixed_6a.branch1", x, [(192, 1), (192, 3, 1, 1), (256, 3, 2)]),
                    self.spec.add("MaxPool2D", 3, stride=2, name="mixed_6a.branch2", inputs=x).last]
        return self.spec.add("Concatenate", axis=1, name="mixed_6a", inputs=branches).last

    def mixed_7a(self, x: str) -> str:
        branches = [self.chain("mixed_7a.branch0", x, [(256, 1), (384, 3, 2)]),
                    self.chain("mixed_7a.branch1", x, [(256, 1), (256, 3, 2)]),
                    self.chain("mixed_7a.branch2", x, [(256, 1), (256, 3, 1, 1), (256, 3, 2)]),
                    self.spec.add("MaxPool2D", 3, stride=2, name="mixed_7a.branch3", inputs=x).last]
        return self.spec.add("Concatenate", axis=1, name="mixed_7a", inputs=branches).last


def inception_resnet_v1(input_size: tuple[int, int, int] = (3, 160, 160), embedding_size: int = EMBEDDING_SIZE,
                        divisor: int = 1, repeats: tuple[int, int, int] = (5, 10, 5),
                        dropout: float = 0.6) -> ModelSpec:
    """facenet-pytorch's ``InceptionResnetV1`` (``classify=False``): input ``faces`` (3, H, W),
    standardised; output ``normalize``, the L2-normalised embedding. ``divisor`` divides every
    channel count and ``repeats`` sets the number of Block35/Block17/Block8 (5, 10, 5 published)."""
    channels, height, width = input_size
    if channels != 3 or min(height, width) < MIN_SIZE:
        raise ZooError(f"InceptionResnetV1 takes RGB images of at least {MIN_SIZE}x{MIN_SIZE} (3, H, W); got "
                       f"input_size {tuple(input_size)}")
    if divisor not in (1, 2, 4, 8):
        raise ZooError(f"divisor must be 1, 2, 4 or 8 (every channel count divides by it), got {divisor!r}")
    # not "image": a server's image-file input takes that name (see llmasos.serve.faces)
    spec = ModelSpec().add_input("faces", tuple(input_size))
    net = _Builder(spec, divisor)
    x = net.conv("conv2d_1a", "faces", 32, 3, 2)
    x = net.conv("conv2d_2a", x, 32, 3)
    x = net.conv("conv2d_2b", x, 64, 3, 1, 1)
    x = spec.add("MaxPool2D", 3, stride=2, name="maxpool_3a", inputs=x).last
    x = net.conv("conv2d_3b", x, 80, 1)
    x = net.conv("conv2d_4a", x, 192, 3)
    x = net.conv("conv2d_4b", x, 256, 3, 2)
    for index in range(repeats[0]):
        x = net.block35(f"repeat_1.{index}", x, 0.17)
    x = net.mixed_6a(x)
    for index in range(repeats[1]):
        x = net.block17(f"repeat_2.{index}", x, 0.10)
    x = net.mixed_7a(x)
    for index in range(repeats[2]):
        x = net.block8(f"repeat_3.{index}", x, 0.20)
    net.block8("block8", x, 1.0, relu=False)
    spec.add("GlobalAvgPool2D", name="avgpool_1a")
    spec.add("Dropout", dropout, name="dropout")
    spec.add("Dense", embedding_size, use_bias=False, name="last_linear")
    spec.add("BatchNorm", eps=BN_EPS, name="last_bn")
    spec.add("L2Normalize", name="normalize")
    return spec.set_outputs("normalize")


def _builder_options(name: str, num_classes: int, logits: bool) -> None:
    if num_classes != EMBEDDING_SIZE:
        raise ZooError(f"{name} gives {EMBEDDING_SIZE}-d face embeddings and has no classifier: num_classes does "
                       f"not apply (got {num_classes})")
    if logits:
        raise ZooError(f"{name} outputs L2-normalised embeddings, not class scores: logits does not apply")


def facenet_state_dict(state: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    """A facenet-pytorch checkpoint without its ``logits`` classifier (the published weights keep
    VGGFace2's or CASIA-WebFace's identity head, which an embedder does not use)."""
    return {key: value for key, value in state.items() if not key.startswith("logits.")}


# -- the model ----------------------------------------------------------------------------------


class FaceNet(Model):
    """A zoo face embedder: an ordinary :class:`~llmasos.model.Model` (predict, save, export,
    serve) with :meth:`embed`, :meth:`verify` and :meth:`identify`. ``threshold`` (default
    :data:`THRESHOLD`) is the largest embedding distance still called the same person."""

    @property
    def threshold(self) -> float:
        """The largest embedding distance still called the same person (default :data:`THRESHOLD`);
        kept in the model's metadata, so ``save``/``Model.load``, ``.to()`` and exports keep it too."""
        return float(self.metadata.get("threshold", THRESHOLD))

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.metadata["threshold"] = _check_threshold(value)

    def _like(self, framework: str) -> "FaceNet":
        return type(self)(spec=ModelSpec.from_dict(self.spec.to_dict()), framework=framework,
                          output_dim=self.output_dim, name=self.name)

    @property
    def image_size(self) -> tuple[int, int]:
        """The (H, W) faces must have: the model's input size."""
        _, height, width = self.spec.inputs[0].shape
        return height, width

    @property
    def embedding_size(self) -> int:
        return self.spec.shapes()[self.spec.outputs[0]][-1]

    def face_settings(self) -> dict:
        """What an exported file says of its faces (``llmasos.faces``), so a server embeds image
        files: their size, the standardisation and the verification threshold."""
        return {"task": TASK, "size": [*self.image_size], "mean": MEAN, "scale": SCALE, "threshold": self.threshold}

    def prepare(self, faces: Any, standardized: bool = False) -> np.ndarray:
        """Faces as the standardised ``(N, 3, H, W)`` float32 batch ``predict`` takes.

        ``faces``: a PIL image; an RGB array ``(H, W, 3)`` (as images load) or ``(3, H, W)``
        (as facenet-pytorch's ``MTCNN(post_process=False)`` returns crops) of pixels 0-255, uint8
        or float; a grey ``(H, W)`` array; an ``(N, H, W, 3)`` or ``(N, 3, H, W)`` batch; or a
        list of those. With ``standardized`` the values are already ``(pixels - 127.5) / 128``
        (``MTCNN``'s default output) and are used as they are. Every face must be exactly
        :attr:`image_size`: nothing is resized or cropped here.
        """
        batch = _pixel_batch(faces, self.image_size)
        return np.ascontiguousarray(batch if standardized else standardize(batch), dtype=np.float32)

    def embed(self, faces: Any, batch_size: int = 32, standardized: bool = False) -> np.ndarray:
        """The faces' embeddings, ``(N, 512)`` float32 rows of unit length (see :meth:`prepare`
        for what ``faces`` may be)."""
        return np.asarray(self.predict(self.prepare(faces, standardized), batch_size=batch_size), dtype=np.float32)

    def distance(self, a: Any, b: Any) -> float:
        """The Euclidean distance between two faces' embeddings; each of ``a``, ``b`` is one face
        (as :meth:`prepare` takes it) or an embedding (a vector of :attr:`embedding_size`)."""
        first, second = self._vectors([a, b])
        return float(np.linalg.norm(first - second))

    def verify(self, a: Any, b: Any, threshold: float | None = None) -> tuple[bool, float]:
        """``(same person, distance)``: whether faces (or embeddings) ``a`` and ``b`` lie within
        ``threshold`` (default :attr:`threshold`, 1.04 on the L2 distance; see the module)."""
        limit = _check_threshold(self.threshold if threshold is None else threshold)
        distance = self.distance(a, b)
        return distance <= limit, distance

    def identify(self, face: Any, gallery: Mapping[str, Any], threshold: float | None = None) -> str | None:
        """The name in ``gallery`` (name -> a face image or an embedding) whose entry lies closest
        to ``face``, or None when even that one is farther than ``threshold``."""
        limit = _check_threshold(self.threshold if threshold is None else threshold)
        if not isinstance(gallery, Mapping) or not gallery:
            raise DataError(f"gallery must be a non-empty dict of name -> face image or embedding, got "
                            f"{type(gallery).__name__}{' (empty)' if isinstance(gallery, Mapping) else ''}")
        names = list(gallery)
        vectors = self._vectors([face, *(gallery[name] for name in names)])
        distances = np.linalg.norm(vectors[1:] - vectors[0], axis=1)
        best = int(np.argmin(distances))
        return names[best] if distances[best] <= limit else None

    def _vectors(self, items: list) -> np.ndarray:
        """Embeddings for a mix of faces and embeddings, the faces run through the model together."""
        out: list[np.ndarray | None] = [self._as_embedding(item) for item in items]
        faces = [index for index, vector in enumerate(out) if vector is None]
        if faces:
            for index, vector in zip(faces, self.embed([items[i] for i in faces])):
                out[index] = vector
        return np.stack(out)

    def _as_embedding(self, item: Any) -> np.ndarray | None:
        """``item`` as an embedding when it is one (a 1-D vector of :attr:`embedding_size`), else None."""
        if isinstance(item, np.ndarray) and item.ndim == 1 or isinstance(item, (list, tuple)) and item and \
                all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item):
            vector = np.asarray(item, dtype=np.float32)
            if vector.shape != (self.embedding_size,) or not np.all(np.isfinite(vector)):
                raise DataError(f"an embedding must be {self.embedding_size} finite numbers, got shape {vector.shape}")
            return vector
        return None


def _check_threshold(value: Any) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise DataError(f"threshold must be a non-negative number (a distance), got {value!r}")
    return float(value)


def _pixel_batch(faces: Any, size: tuple[int, int]) -> np.ndarray:
    """Faces (see :meth:`FaceNet.prepare`) as one float32 ``(N, 3, H, W)`` batch of their values."""
    if isinstance(faces, (list, tuple)):
        if not faces:
            raise DataError("no faces given")
        return np.concatenate([_pixel_batch(face, size) for face in faces])
    array = _as_array(faces)
    if array.ndim == 2:                                   # grey: the same value in R, G and B
        array = np.repeat(array[None], 3, axis=0)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise DataError(f"a face must be an image (H, W, 3), (3, H, W) or (H, W), or a batch (N, H, W, 3) or "
                        f"(N, 3, H, W); got an array of shape {array.shape}")
    if array.shape[-1] == 3 and array.shape[1] != 3:      # channels last, as images load
        array = array.transpose(0, 3, 1, 2)
    if array.shape[1] != 3:
        raise DataError(f"a face must have 3 colour channels (RGB), first or last; got shape {array.shape[1:]}")
    if tuple(array.shape[2:]) != tuple(size):
        raise DataError(f"faces must be {size[0]}x{size[1]} (the model's input size; crop and align them first, "
                        f"e.g. with facenet-pytorch's MTCNN(image_size={size[0]})), got {array.shape[2]}x"
                        f"{array.shape[3]}")
    if not np.all(np.isfinite(array)):
        raise DataError("a face holds NaN or infinite values")
    return array.astype(np.float32)


def _as_array(face: Any) -> np.ndarray:
    """One face (or batch) as a numeric array; a PIL image as its RGB pixels."""
    if hasattr(face, "convert") and hasattr(face, "size") and hasattr(face, "mode"):   # a PIL image
        return np.asarray(face.convert("RGB"))
    if hasattr(face, "detach") and hasattr(face, "numpy"):                            # a torch tensor
        face = face.detach().cpu().numpy()
    if not isinstance(face, np.ndarray):
        raise DataError(f"a face must be an image: a PIL image or an array of pixels ((H, W, 3) uint8 or float "
                        f"0-255), got {type(face).__name__}")
    if face.dtype == bool or not (np.issubdtype(face.dtype, np.integer) or np.issubdtype(face.dtype, np.floating)):
        raise DataError(f"a face's pixels must be numbers (uint8 or float 0-255), got dtype {face.dtype}")
    return face


# -- registration -------------------------------------------------------------------------------

_INFO = dict(task=TASK, input_size=(3, 160, 160), crop_pct=1.0, mean=(MEAN / 255,) * 3, std=(SCALE / 255,) * 3,
             num_classes=EMBEDDING_SIZE, classifier="last_linear", labels=None,
             adapt_state_dict=facenet_state_dict, model_subclass=FaceNet)


@register(name="facenet", weights=VGGFACE2, **_INFO)
def inception_resnet_v1_facenet(num_classes: int = EMBEDDING_SIZE, input_size: tuple[int, int, int] = (3, 160, 160),
                                logits: bool = False) -> ModelSpec:
    """InceptionResnetV1 as facenet-pytorch builds it (23.5M parameters); the published
    VGGFace2 weights are facenet-pytorch's ``20180402-114759-vggface2.pt``."""
    _builder_options("facenet", num_classes, logits)
    return inception_resnet_v1(input_size)


@register(name="facenet_tiny", test_variant=True, **{**_INFO, "input_size": (3, 80, 80)})
def inception_resnet_v1_tiny(num_classes: int = EMBEDDING_SIZE, input_size: tuple[int, int, int] = (3, 80, 80),
                             logits: bool = False) -> ModelSpec:
    """The same layout with every channel count divided by 8 and one block per repeat, for fast
    tests (80x80 faces)."""
    _builder_options("facenet_tiny", num_classes, logits)
    return inception_resnet_v1(input_size, divisor=8, repeats=(1, 1, 1))
