# Two commands do everything on a fresh machine:
#   make demo   install, then upscale the bundled samples/ with the shipped weights into out/demo
#   make test   install, then run the test suite (CPU only, offline)
VENV    ?= .venv
PY      := $(VENV)/bin/python
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed-stamp

.PHONY: install test demo lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first: a CPU build here; installed later as a dependency, pip would pull CUDA builds
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/linearsr upscale samples/ out/demo --scale 4

lint: install
	$(VENV)/bin/ruff check linearsr_cli tests benchmarks

bench: install
	$(PY) benchmarks/bench_scaling.py

clean:
	rm -rf out/ .pytest_cache
