#!/usr/bin/env bash
# Fetch the LinearSR training photos from Debian packages (needs apt-get and dpkg; run as root
# or with sudo so that `apt-get update` can run when apt knows no candidate).
#   scripts/fetch_photos.sh [--root data/photos] [--val 5] [--cache data/debs]
# Writes data/photos/{train,val}/*.png and data/photos/manifest.json. See docs/DATA.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m linearsr_cli data fetch "$@"
