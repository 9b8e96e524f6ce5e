#!/bin/bash
# bench/gpu_onnx.py on a GPU machine that cannot reach a package index: everything it needs is
# carried in .gpu/ (ignored by git), prepared beforehand on a machine with pip:
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d /tmp onnxruntime-gpu==1.30.0
#   python bench/gpu_bundle.py pack /tmp/onnxruntime_gpu-1.30.0-*.whl .gpu/bundle --arch 90   # 35 MB
#   pip download ... -d .gpu/whl pydantic pydantic_core annotated-types typing-inspection orjson typing_extensions
#   cp models/centerface.onnx .gpu/
#
# then, there, from the repository root: `bash bench/gpu_device.sh` (OUT: where the JSON and
# log go). It prints the machine, the machine's own onnxruntime and its providers, rebuilds the
# bundled onnxruntime-gpu into /tmp/site, points the loader at the CUDA libraries the machine's
# Python packages hold, and runs the bench (a copy in .gpu/ wins, for a tree without it).
export PYTHONUNBUFFERED=1 CUDA_MODULE_LOADING=LAZY
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
BENCH=bench; [ -f .gpu/gpu_onnx.py ] && BENCH=.gpu
echo "== machine"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv; nproc
python3 -c "import sys, onnxruntime as o; print(sys.version.split()[0], 'own onnxruntime', o.__version__, o.get_available_providers(), o.__file__)"
python3 -m pip list 2>/dev/null | grep -i -E "^(onnxruntime|nvidia-cudnn|nvidia-cublas|nvidia-cuda-runtime|nvidia-curand|nvidia-cufft|pyarrow|zstandard|numpy|opencv|scikit-image) "
echo "== wheels"; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 2
echo "== onnxruntime-gpu, sm_90 only"; time timeout 200 python3 $BENCH/gpu_bundle.py unpack .gpu/bundle /tmp/site
SP=$(python3 -c 'import site; print(site.getsitepackages()[0])')
LIBS=$(find "$SP" /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu \( -name 'libcublas.so.13*' -o -name 'libcublasLt.so.13*' -o -name 'libcudart.so.13*' -o -name 'libcurand.so.10*' -o -name 'libcufft.so.12*' -o -name 'libcudnn.so.9*' -o -name 'libnvrtc.so.13*' -o -name 'libnvinfer.so*' \) 2>/dev/null)
echo "$LIBS"
LD_LIBRARY_PATH=$(for f in $LIBS; do dirname "$f"; done | sort -u | tr '\n' ':')$LD_LIBRARY_PATH
export LD_LIBRARY_PATH; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldd /tmp/site/onnxruntime/capi/libonnxruntime_providers_cuda.so | grep -E "not found|cublas|cudart|curand|cuda.so"
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import onnxruntime as o; print('bundled onnxruntime', o.__version__, o.get_available_providers(), o.__file__)"
mkdir -p models && cp .gpu/centerface.onnx models/
echo "== bench"; timeout 240 python3 $BENCH/gpu_onnx.py --runs 200 --warmup 20 --cpu-threads 1,max --json "$OUT/gpu_onnx.json"
echo "bench exit $?"
