#!/usr/bin/env bash
# Builds the GPU binary, `cargo build --release --features cuda`, on a fresh Linux machine:
# the CUDA compiler and runtime come from PyPI (pinned below), no system CUDA toolkit and no
# NVIDIA driver are needed to build.
#
# The binary ($CARGO_TARGET_DIR/release/reins) runs on CUDA GPU 0 (GPU LOCAL_RANK under
# torchrun) where the NVIDIA driver and cuBLAS/cuRAND can be loaded, and on the CPU everywhere
# else; launched by torchrun it trains data-parallel through NCCL: cudarc opens the CUDA libraries
# at run time (the vendored candle-core, vendor/README.md), and the CUDA runtime that candle's
# kernels call is linked in statically. No CUDA library is a link-time dependency; the script
# checks that at the end.
#
#   scripts/build-cuda.sh [--runtime-libs] [extra cargo args]
#
#   --runtime-libs    also install cuBLAS, cuRAND, NVRTC and NCCL next to the compiler and
#                     print the LD_LIBRARY_PATH a GPU machine needs to run the binary from here.
#
# Environment:
#   CUDA_COMPUTE_CAP  GPU architecture the kernels are compiled for (default 90: H100/H200;
#                     80 for A100, 89 for L4/RTX 40xx, 100 for B200). Below 90 the PTX also
#                     runs on newer GPUs; from 90 on candle-kernels' builder compiles the
#                     arch-specific variant (sm_90a), which runs on that generation only.
#   REINS_CUDA_ENV    where the PyPI toolkit is installed (default .cuda-toolkit, a venv).
#   CARGO_TARGET_DIR  default target-cuda, so the CPU and GPU builds do not evict each other.
#   PYTHON            the Python 3 that creates the venv (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

# One CUDA minor for everything: nvcc 13.0 rejects the headers of a newer runtime ("CUDA
# compiler and CUDA toolkit headers are incompatible").
BUILD_WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96
)
RUNTIME_WHEELS=(
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
  nvidia-cuda-nvrtc==13.0.88
  # Data-parallel training under torchrun (crates/reins-train/src/parallel/nccl_world.rs).
  nvidia-nccl-cu13==2.32.3
)

runtime_libs=0
if [ "${1:-}" = "--runtime-libs" ]; then
  runtime_libs=1
  shift
fi

ENV_DIR=${REINS_CUDA_ENV:-$PWD/.cuda-toolkit}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
PYTHON=${PYTHON:-python3}

echo "== CUDA toolkit from PyPI into $ENV_DIR"
if [ ! -x "$ENV_DIR/bin/pip" ]; then
  "$PYTHON" -m venv "$ENV_DIR" || {
    echo "build-cuda: could not create a venv with $PYTHON; hint: apt-get install python3-venv" >&2
    exit 1
  }
fi
wheels=("${BUILD_WHEELS[@]}")
if [ $runtime_libs = 1 ]; then wheels+=("${RUNTIME_WHEELS[@]}"); fi
"$ENV_DIR/bin/pip" install --quiet --disable-pip-version-check "${wheels[@]}"

CU=$("$ENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13
[ -x "$CU/bin/nvcc" ] || { echo "build-cuda: no nvcc under $CU" >&2; exit 1; }

# candle-kernels compiles its kernels with the nvcc found on PATH (cicc and ptxas come from
# nvcc.profile); cudarc reads the CUDA version from `nvcc --version`.
export PATH="$CU/bin:$PATH"
export CUDA_ROOT=$CU CUDA_HOME=$CU
# candle-kernels asks the linker for `-lcudart`. A directory holding only libcudart.a (the
# wheel's libcudart_static.a, what nvcc itself links by default) makes that the static
# runtime, which opens libcuda.so.1 only when a kernel first runs: a shared libcudart here
# would be a load-time dependency that stops the binary on machines without CUDA.
mkdir -p "$ENV_DIR/link"
ln -sf "$CU/lib/libcudart_static.a" "$ENV_DIR/link/libcudart.a"
export LIBRARY_PATH="$ENV_DIR/link${LIBRARY_PATH:+:$LIBRARY_PATH}"

echo "== nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, target $CARGO_TARGET_DIR"
start=$(date +%s)
cargo build --release --locked -p reins --features cuda "$@"
echo "== built in $(($(date +%s) - start)) s"

bin="$CARGO_TARGET_DIR/release/reins"
# The point of the dynamic loading: no CUDA library may be needed to start the binary.
if readelf -d "$bin" | grep -E 'NEEDED.*lib(cuda|cudart|cublas|cublasLt|curand|nvrtc|nccl)\.' >&2; then
  echo "build-cuda: $bin links a CUDA library at load time (above); it would not start without the driver" >&2
  exit 1
fi
echo "$bin: $(du -h "$bin" | cut -f1), needs only: $(readelf -d "$bin" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
if [ $runtime_libs = 1 ]; then
  # cudarc opens NCCL as libnccl.so; the wheel ships only libnccl.so.2 (nvidia/nccl/lib).
  NCCL=$("$ENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/nccl/lib
  [ -f "$NCCL/libnccl.so.2" ] || { echo "build-cuda: no libnccl.so.2 under $NCCL" >&2; exit 1; }
  mkdir -p "$ENV_DIR/nccl"
  ln -sf "$NCCL/libnccl.so.2" "$ENV_DIR/nccl/libnccl.so"
  echo "on a GPU machine: export LD_LIBRARY_PATH=$CU/lib:$ENV_DIR/nccl\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
fi
