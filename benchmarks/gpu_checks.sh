#!/usr/bin/env bash
# The GPU checks of sparseopt, for a machine with an NVIDIA GPU and numba-cuda:
# the CUDA tests on the device (not the simulator), then benchmarks/bench_cuda.py
# (dense and sparse steps against torch.optim, estimators against the CPU).
#
#   bash benchmarks/gpu_checks.sh            # logs in ./gpu_out (or $OUT)
#
# Each stage has its own time limit (TEST_TIMEOUT, BENCH_TIMEOUT seconds) so that
# one slow stage cannot eat the others; PYTHON picks the interpreter (python3).
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/sparseopt_numba_cache}
unset NUMBA_ENABLE_CUDASIM
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c 'import sys, numpy, numba, scipy, sklearn; print(sys.version.split()[0], "numpy", numpy.__version__, "numba", numba.__version__, "scipy", scipy.__version__, "sklearn", sklearn.__version__)'
  $PY -m pip show numba-cuda 2>/dev/null | head -2
  $PY -c 'import sparseopt.cuda as sc; print("sparseopt.cuda.is_available():", sc.is_available(), "simulator:", sc.simulator_enabled())'
} 2>&1 | tee "$OUT/env.txt"
# xdist when there: the kernels compile on the CPU (NVVM), one process per core pays
XDIST=$($PY -c 'import xdist' 2>/dev/null && echo "-n ${WORKERS:-8}")
timeout "${TEST_TIMEOUT:-240}" $PY -m pytest -q -p no:cacheprovider $XDIST --durations=10 \
  tests/test_cuda.py tests/test_cuda_linear.py 2>&1 | tee "$OUT/tests.txt"
echo "tests exit: ${PIPESTATUS[0]}" | tee -a "$OUT/tests.txt"
timeout "${BENCH_TIMEOUT:-240}" $PY benchmarks/bench_cuda.py "$@" 2>&1 | tee "$OUT/bench.txt"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$OUT/bench.txt"
