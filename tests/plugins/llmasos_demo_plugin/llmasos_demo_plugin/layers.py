"""The ``DemoHighway`` layer: a highway layer written with the neutral ops, as a third party would.
It is not decorated: the entry point's name is the name it is registered under."""

from llmasos import layers


class DemoHighway(layers.Layer):
    """``t * relu(x W + b) + (1 - t) * x`` with the gate ``t = sigmoid(x Wt + bt)``; the output has
    the input's shape. ``gate_bias`` starts the gate closed (Srivastava et al. use -1 to -3)."""

    def __init__(self, gate_bias=-1.0):
        self.gate_bias = gate_bias

    def output_shape(self, input_shape):
        return input_shape

    def weight_shapes(self, input_shape):
        n = input_shape[-1]
        return {"kernel": (n, n), "bias": (n,), "gate_kernel": (n, n), "gate_bias": (n,)}

    def call(self, ops, x, kernel, bias, gate_kernel, gate_bias):
        gate = ops.sigmoid(ops.matmul(x, gate_kernel) + gate_bias + self.gate_bias)
        return gate * ops.relu(ops.matmul(x, kernel) + bias) + (1.0 - gate) * x
