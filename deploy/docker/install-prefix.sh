#!/bin/sh
# The builder stage's install, also run by the test suite: install ml-model-manager with the
# given extras into PREFIX (every dependency too, whatever the installing Python already has),
# then strip what a running server never reads.
#   install-prefix.sh PREFIX [EXTRAS] [SOURCE]     e.g. install-prefix.sh /install "keras,torch" .
set -eu
prefix=$1
extras=${2:-}
source=${3:-.}
target="$source"
if [ -n "$extras" ]; then target="$source[$extras]"; fi

PIP_NO_CACHE_DIR=${PIP_NO_CACHE_DIR:-1} PIP_DISABLE_PIP_VERSION_CHECK=1 \
    python -m pip install --no-warn-script-location --ignore-installed --prefix="$prefix" "$target"

# Bytecode is rebuilt on demand (and PYTHONDONTWRITEBYTECODE keeps it from being written);
# test suites, caches and headers are never imported by the server.
find "$prefix" -depth -type d \( -name __pycache__ -o -name tests -o -name testing_data \) \
    -exec rm -rf {} +
find "$prefix" -type f \( -name '*.pyc' -o -name '*.pyo' \) -delete
rm -rf "$prefix/include" "$prefix/share/doc" "$prefix/share/man"
