"""The registry and ``zoo.load``'s options, without any framework: specs, metadata and errors."""

from __future__ import annotations

import pytest

from llmasos import zoo
from llmasos.errors import ZooError
from llmasos.spec import ModelSpec
from llmasos.zoo.vgg import adaptive_pool_matrix

# torchvision's documented parameter counts (BatchNorm statistics are buffers, not parameters)
TORCHVISION_PARAMETERS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg16": 138_357_544, "vgg16_bn": 138_365_992,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMETERS))
def test_parameter_counts_match_torchvision(name):
    assert zoo.registry.get(name).parameter_count == TORCHVISION_PARAMETERS[name]


def test_list_describes_every_image_model():
    infos = zoo.list(task="image-classification")
    assert {"resnet18", "resnet50", "vgg16_bn", "resnet_tiny"} <= {info.name for info in infos}
    assert {info.name for info in infos} <= {info.name for info in zoo.list()}
    for info in infos:
        assert set(info.frameworks) == {"torch", "tf"} and info.family in ("resnet", "vgg", "vit")
        assert info.classifier in {layer.name for layer in info.spec().layers}
        assert info.name in repr(info) and "parameters=" in repr(info)
    resnet = zoo.registry.get("resnet18")
    assert (resnet.family, resnet.weights.file, resnet.weights.hf_repo) == (
        "resnet", "resnet18-f37072fd.pth", "timm/resnet18.tv_in1k")
    assert "resnet18-f37072fd.pth" in zoo.registry.table(infos)


def test_a_name_registered_twice_raises():
    with pytest.raises(ZooError, match="'resnet18' is registered twice"):
        @zoo.register()
        def resnet18(**options):
            return ModelSpec()


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ZooError, match=r"no zoo model named 'resnet19'.*did you mean 'resnet18'"):
        zoo.load("resnet19")


def test_bad_load_options_are_named():
    with pytest.raises(ZooError, match="freeze must be None or one of 'backbone'"):
        zoo.load("resnet_tiny", freeze="everything")
    with pytest.raises(ZooError, match="num_classes must be a positive int"):
        zoo.load("resnet_tiny", num_classes=0)
    with pytest.raises(ZooError, match="input_size must be"):
        zoo.load("resnet_tiny", input_size=(3, 32, 32, 1))
    with pytest.raises(ZooError, match="at least 32x32"):
        zoo.load("vgg11", input_size=16)


def test_options_shape_the_spec():
    info = zoo.registry.get("resnet50")
    spec = info.spec(num_classes=7, input_size=(96, 128), logits=True)
    assert spec.inputs[0].shape == (3, 96, 128)
    assert spec.shapes()["fc"] == (7,) and spec.final_activation() == "linear"
    assert info.spec().final_activation() == "softmax"
    # torchvision's v1.5 bottleneck: the stride sits on the 3x3 conv
    assert spec.layer("layer2.0.conv1").config["stride"] == [1, 1]
    assert spec.layer("layer2.0.conv2").config["stride"] == [2, 2]


@pytest.mark.parametrize("size, pool", [(224, None), (448, [2, 2]), (64, None)])
def test_vgg_pools_only_where_exact(size, pool):
    spec = zoo.registry.get("vgg11").spec(input_size=size)
    layers = {layer.name: layer for layer in spec.layers}
    assert (layers["avgpool"].config["pool_size"] if "avgpool" in layers else None) == pool
    assert spec.shapes()["flatten"] == ((512 * 49,) if size != 64 else (512 * 4,))


def test_adaptive_pool_matrix_is_torchs_binning():
    # torch's adaptive pooling of 2 inputs to 7 outputs: bins [0,1) x3, [0,2), [1,2) x3
    matrix = adaptive_pool_matrix(7, 2)
    assert matrix.tolist() == [[1, 0]] * 3 + [[0.5, 0.5]] + [[0, 1]] * 3
    assert adaptive_pool_matrix(7, 7).tolist() == [[float(i == j) for j in range(7)] for i in range(7)]
