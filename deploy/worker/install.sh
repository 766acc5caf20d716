#!/bin/sh
# Install the StoryWorld worker into the Python environment that runs this script.
#
#   deploy/worker/install.sh SRC_DIR
#
# The worker image runs exactly this (deploy/worker/Dockerfile), and tests/test_deploy.py
# runs it in a fresh virtual environment, so the image cannot drift from what is tested.
#
# Environment:
#   PYTHON             the interpreter to install into (default: python3)
#   TORCH_INDEX_URL    where the CUDA build of torch comes from
#                      (default https://download.pytorch.org/whl/cu126; the CUDA version
#                      must not be newer than the base image's)
#   STORYWORLD_NO_DEPS=1  install StoryWorld alone, without dependencies (tests, whose
#                      environment already has them, so the run takes seconds)
set -eu

SRC="${1:?usage: install.sh SRC_DIR}"
PYTHON="${PYTHON:-python3}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu126}"
PIP="$PYTHON -m pip --disable-pip-version-check --no-input"

if [ "${STORYWORLD_NO_DEPS:-0}" = 1 ]; then
    $PIP install --quiet --no-deps --no-build-isolation "$SRC"
else
    $PIP install --quiet --no-cache-dir --upgrade pip setuptools wheel
    # torch first, from the CUDA index: PyPI's default build would be the wrong CUDA.
    $PIP install --quiet --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch>=2.4,<=2.14.1"
    $PIP install --quiet --no-cache-dir "$SRC[gpu]"
fi

# What the image needs to work, checked where it was installed: the worker, doctor and the
# healthcheck import and start without the console's or the API's packages.
$PYTHON - <<'PY'
import importlib.util
import storyworld.worker.cli, storyworld.doctor, storyworld.worker.health  # noqa: F401
for absent in ("textual", "fastapi"):
    if importlib.util.find_spec(absent) is not None:
        print(f"install.sh: note: {absent} is installed but the worker does not need it")
print("install.sh: storyworld", __import__("storyworld").__version__, "installed at",
      __import__("storyworld").__file__)
PY
storyworld-worker --help >/dev/null
storyworld doctor --help >/dev/null
