#!/usr/bin/env bash
# Everything llmasos checks on a CUDA machine, in one go (about 10 minutes on one GPU):
#   bash benchmarks/gpu_check.sh            # from anywhere; uses ./.venv when there is one
# 1. says what is there (GPU, driver, torch's CUDA, TensorFlow's and ONNX Runtime's view);
# 2. installs what is missing and can be installed: onnxruntime-gpu (ORT's CUDA provider, with the
#    CUDA/cuDNN wheels it loads) in place of the CPU onnxruntime, put back if that install fails;
#    TensorFlow's GPU build only with LLMASOS_TF_GPU=1 (pip install "llmasos[tf-gpu]", a large download);
# 3. runs the GPU tests (tests/test_gpu.py, plus every other test marked gpu) and the GPU benchmarks
#    (benchmarks/bench_gpu.py: CUDA vs CPU training parity after one epoch, AMP speed-up, ORT CUDA vs CPU).
# The exit status is the tests'; a step that cannot run says why and the rest go on.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
PY=${PYTHON:-python}

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
$PY - <<'PY'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs: {torch.cuda.device_count()}")
try:
    import onnxruntime as ort
    print(f"onnxruntime {ort.__version__}: {', '.join(ort.get_available_providers())}")
except ImportError:
    print("onnxruntime: not installed")
PY

echo "== installing what the GPU checks need"
has_ort_cuda() {
  $PY -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null
}
if ! has_ort_cuda; then
  # Both wheels are the package `onnxruntime`: fetch the GPU one (and the CUDA/cuDNN wheels it
  # loads) first, and only once that worked swap it in, so an offline machine keeps a working ORT.
  WHEELS=$(mktemp -d)
  if timeout 300 $PY -m pip download -q -d "$WHEELS" "onnxruntime-gpu[cuda,cudnn]>=1.20"; then
    $PY -m pip uninstall -q -y onnxruntime
    $PY -m pip install -q --no-index --find-links "$WHEELS" "onnxruntime-gpu[cuda,cudnn]>=1.20" \
      || echo "installing the downloaded onnxruntime-gpu failed"
  else
    echo "onnxruntime-gpu could not be downloaded (offline?): the ORT CUDA checks will skip, saying so"
  fi
fi
if [ "${LLMASOS_TF_GPU:-0}" = "1" ]; then
  timeout 600 $PY -m pip install -q -e ".[tf-gpu]" || echo "TensorFlow's GPU build could not be installed"
fi

echo "== GPU tests"
timeout 420 $PY -m pytest tests -m gpu -q -rs -p no:cacheprovider --no-header
status=$?

echo "== GPU benchmarks"
timeout 240 $PY benchmarks/bench_gpu.py || echo "bench_gpu.py failed or timed out (status $?)"
exit $status
