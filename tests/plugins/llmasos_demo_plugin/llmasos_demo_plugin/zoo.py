"""A zoo model of the plugin: ``zoo.load("demo_tiny_cnn")`` finds it through the ``llmasos.zoo`` entry point."""

from llmasos.spec import ModelSpec
from llmasos.zoo.registry import register


@register(input_size=(1, 8, 8), num_classes=3, classifier="head", labels=None, mean=(0.5,), std=(0.5,), family="demo")
def demo_tiny_cnn(num_classes, input_size, logits):
    spec = ModelSpec.sequential(input_size)
    spec.add("Conv2D", 4, kernel_size=3, activation="relu").add("GlobalAvgPool2D")
    spec.add("Dense", num_classes, name="head", activation=None if logits else "softmax")
    return spec


def unregistered_builder(num_classes, input_size, logits):
    """Declared as a zoo model but never decorated with register: the zoo says so."""
