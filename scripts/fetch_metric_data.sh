#!/usr/bin/env bash
# Fetch the data files of the no-reference metrics into linearsr_cli/evaluate/data/ (or $1):
#   niqe_pris_params.npz    NIQE pristine model (Mittal et al. 2013), from basicsr 1.4.2's sdist (PyPI)
#   brisque_model_live.yml  BRISQUE SVR model and feature ranges (Mittal et al. 2012),
#   brisque_range_live.yml  from Debian's opencv-data package
# Only package registries are used (pip, apt). Safe to re-run: present files are kept.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$here/linearsr_cli/evaluate/data}"
mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ ! -s "$dest/niqe_pris_params.npz" ]]; then
  echo "NIQE: downloading the basicsr 1.4.2 sdist (no install)"
  # --no-build-isolation: pip reads the sdist's metadata with the installed torch/setuptools
  # instead of fetching torch into a build environment (basicsr's setup.py imports torch).
  python -m pip download basicsr==1.4.2 --no-deps --no-binary :all: --no-build-isolation \
    -d "$work" >/dev/null
  tar -xzf "$work"/basicsr-1.4.2.tar.gz -C "$work" basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz
  cp "$work"/basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz "$dest/"
fi

if [[ ! -s "$dest/brisque_model_live.yml" || ! -s "$dest/brisque_range_live.yml" ]]; then
  echo "BRISQUE: downloading Debian package opencv-data (no install)"
  if ! (cd "$work" && apt-get download opencv-data >/dev/null 2>&1); then
    apt-get update >/dev/null
    (cd "$work" && apt-get download opencv-data >/dev/null)
  fi
  dpkg -x "$work"/opencv-data_*.deb "$work/opencv-data"
  for name in brisque_model_live.yml brisque_range_live.yml; do
    found="$(find "$work/opencv-data" -name "$name" | head -n 1)"
    if [[ -z "$found" ]]; then
      echo "BRISQUE: $name not found in opencv-data" >&2
      exit 1
    fi
    cp "$found" "$dest/"
  done
fi

echo "metric data in $dest:"
ls -l "$dest"
