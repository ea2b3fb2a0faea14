#!/usr/bin/env bash
# Everything llmasos checks on a CUDA machine, in one go (about 10 minutes on one GPU):
#   bash benchmarks/gpu_check.sh            # from anywhere; uses ./.venv when there is one
# 1. says what is there (GPU, driver, torch's CUDA, TensorFlow's and ONNX Runtime's view);
# 2. installs what is missing and can be installed: onnxruntime-gpu (ORT's CUDA provider, with the
#    CUDA/cuDNN wheels it loads) in place of the CPU onnxruntime, put back if that install fails,
#    only where there is a GPU (a CPU machine keeps its onnxruntime and runs the rest as a smoke check);
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
gpus=$($PY -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
has_ort_cuda() {
  $PY -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null
}
if [ "$gpus" = "0" ]; then
  # a CPU machine keeps its CPU onnxruntime: the GPU wheel would replace it for nothing
  echo "no CUDA GPU here: nothing installed; the GPU tests skip, saying why"
elif ! has_ort_cuda; then
  # Both wheels are the package `onnxruntime`: fetch the GPU one (with the CUDA/cuDNN wheels it
  # loads) and the CPU one installed now before removing anything, so an offline machine, or a
  # failed install, keeps a working ORT.
  cpu_ort=$($PY -c "import importlib.metadata as m; print(m.version('onnxruntime'))" 2>/dev/null)
  WHEELS=$(mktemp -d)
  if timeout 300 $PY -m pip download -q -d "$WHEELS" "onnxruntime-gpu[cuda,cudnn]>=1.20" \
     && { [ -z "$cpu_ort" ] || timeout 300 $PY -m pip download -q --no-deps -d "$WHEELS" "onnxruntime==$cpu_ort"; }; then
    [ -z "$cpu_ort" ] || $PY -m pip uninstall -q -y onnxruntime
    if ! $PY -m pip install -q --no-index --find-links "$WHEELS" "onnxruntime-gpu[cuda,cudnn]>=1.20"; then
      echo "installing the downloaded onnxruntime-gpu failed: putting onnxruntime $cpu_ort back"
      [ -z "$cpu_ort" ] || $PY -m pip install -q --no-index --find-links "$WHEELS" "onnxruntime==$cpu_ort"
    fi
  else
    echo "onnxruntime-gpu could not be downloaded (offline?): nothing changed; the ORT CUDA checks will skip, saying so"
  fi
  rm -rf "$WHEELS"
fi
if [ "${LLMASOS_TF_GPU:-0}" = "1" ]; then
  timeout 600 $PY -m pip install -q -e ".[tf-gpu]" || echo "TensorFlow's GPU build could not be installed"
fi

echo "== GPU tests"
timeout 420 $PY -m pytest tests -m gpu -q -rs -p no:cacheprovider --no-header
status=$?

echo "== GPU benchmarks"
quick=$([ "$gpus" = "0" ] && echo --quick)   # without a GPU only the CPU halves run: a smoke run
timeout 240 $PY benchmarks/bench_gpu.py $quick || echo "bench_gpu.py failed or timed out (status $?)"
exit $status
