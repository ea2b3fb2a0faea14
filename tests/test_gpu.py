"""Training and inference on a CUDA GPU: torch (and TensorFlow where its GPU build is installed)
trains on "cuda" to the CPU's numbers, predict hands back NumPy, mixed precision trains, and ONNX
Runtime's CUDA provider really runs an exported model. Without a GPU every test skips, saying why;
``benchmarks/gpu_check.sh`` runs them (with the GPU benchmarks) on a CUDA machine."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer

pytestmark = pytest.mark.gpu


def _cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")


def _mlp(framework: str, device: str) -> Model:
    model = Model(input_dim=64, output_dim=10, framework=framework, device=device)
    model.add_layer("Dense", 64, activation="relu").add_layer("Dense", 10, activation="softmax")
    return model.build(seed=0)


def _one_epoch(framework: str, device: str, weights, digits, **options) -> Model:
    model = _mlp(framework, device)
    model.set_weights(weights)
    model.train(Dataset(digits[0], digits[1], mode="train"), Optimizer("Adam", lr=0.01), epochs=1, batch_size=32,
                seed=0, progress=False, **options)
    return model


@pytest.mark.torch
def test_torch_cuda_trains_to_the_cpu_numbers_and_predicts_numpy(digits):
    _cuda()
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False     # fp32 matmuls, as on the CPU
    weights = _mlp("torch", "cpu").get_weights()
    cpu, gpu = (_one_epoch("torch", device, weights, digits) for device in ("cpu", "cuda"))
    assert next(gpu.backend_model.parameters()).device.type == "cuda"
    for layer, ws in cpu.get_weights().items():
        for name, value in ws.items():
            np.testing.assert_allclose(gpu.get_weights()[layer][name], value, atol=1e-4, err_msg=f"{layer}/{name}")
    out = gpu.predict(digits[2])
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, cpu.predict(digits[2]), atol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_torch_amp_on_cuda_trains_as_well_as_fp32(precision, digits):
    _cuda()
    weights = _mlp("torch", "cpu").get_weights()
    test = Dataset(digits[2], digits[3], mode="test")
    full = _one_epoch("torch", "cuda", weights, digits).evaluate(test)["accuracy"]
    mixed_model = _one_epoch("torch", "cuda", weights, digits, precision=precision)
    assert abs(mixed_model.evaluate(test)["accuracy"] - full) <= 0.01
    assert all(p.dtype.is_floating_point and str(p.dtype) == "torch.float32"
               for p in mixed_model.backend_model.parameters())


@pytest.mark.tf
def test_tensorflow_gpu_trains_to_the_cpu_numbers(digits):
    _cuda()
    from llmasos.adapters import get_backend

    if "cuda:0" not in get_backend("tf").devices():
        pytest.skip('TensorFlow sees no GPU: install the GPU build with pip install "llmasos[tf-gpu]"')
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)
    weights = _mlp("tf", "cpu").get_weights()
    cpu, gpu = (_one_epoch("tf", device, weights, digits) for device in ("cpu", "cuda"))
    assert "GPU" in gpu.backend_model.trainable_variables[0].device
    for layer, ws in cpu.get_weights().items():
        for name, value in ws.items():
            np.testing.assert_allclose(gpu.get_weights()[layer][name], value, atol=1e-4, err_msg=f"{layer}/{name}")


@pytest.mark.torch
def test_onnx_runtime_cuda_provider_runs_the_model(digits, tmp_path):
    _cuda()
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("ONNX Runtime has no CUDA provider here: pip install onnxruntime-gpu (benchmarks/gpu_check.sh does)")
    from llmasos import export

    if hasattr(ort, "preload_dlls"):    # CUDA/cuDNN from the nvidia-* wheels, where onnxruntime-gpu[cuda,cudnn] put them
        ort.preload_dlls()
    model = _mlp("torch", "cpu")
    path = tmp_path / "mlp.onnx"
    export.to_onnx(model, str(path))
    session = export.load(str(path), providers=["cuda"], strict=True)
    assert session.get_providers()[0] == "CUDAExecutionProvider", session.get_providers()
    name = session.get_inputs()[0].name
    np.testing.assert_allclose(session.run(None, {name: digits[2]})[0], model.predict(digits[2]), atol=1e-4)
