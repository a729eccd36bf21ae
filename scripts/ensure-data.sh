#!/usr/bin/env bash
# Make the real Fashion-MNIST available without a download when we can: on Debian, as root,
# install the dataset-fashion-mnist package (IDX files under /usr/share/datasets/fashion-mnist/).
# Elsewhere softsweep itself downloads the files from the official mirror (checked by SHA-256).
set -euo pipefail
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
   || [ -n "${SOFTSWEEP_DATA:-}" ] \
   || [ -f "${XDG_CACHE_HOME:-$HOME/.cache}/softsweep/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
bash "$(dirname "$0")/apt-install.sh" dataset-fashion-mnist "softsweep downloads the files instead"
