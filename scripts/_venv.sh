# Sourced by scripts/setup_tests.sh and scripts/demo.sh: create/activate the virtual environment and
# install the package (editable, with the C++/CUDA extension built) with the extras in $1.
#   MSRT_VENV=DIR   virtual environment to create/use (default .venv)
VENV=${MSRT_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# torch: the CPU build, pinned (a bare `torch` would pull several GB of CUDA packages).
python -m pip install -q "torch==2.13.0"
# CUDA kernels are compiled when nvcc is found (so compile errors surface here); one
# architecture keeps the build short. Editable, as for every checkout: benchmarks/ runs from
# the repository root.
export CMAKE_ARGS="${CMAKE_ARGS:--DCMAKE_CUDA_ARCHITECTURES=87}"
python -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
python -m pip install -q --no-build-isolation -e ".[$1]"
