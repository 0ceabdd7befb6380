# Two entry points for a newcomer (see README): `make demo` and `make test`.
# Both create .venv from the project's own files if it is missing or out of date.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup demo test test-all test-gpu lint lock clean chromium

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/s3jedi demo

# Browser tests (the demo page, the evaluation report) drive Debian's headless Chromium.
chromium:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }

test: $(VENV)/.installed chromium
	$(PY) -m pytest

# Everything a CPU machine can run: the default tests and the slow ones.
test-all: $(VENV)/.installed chromium
	$(PY) -m pytest -m "not gpu"

# The tests that need a CUDA GPU (run where one is present; benchmarks/device/README.md runs them on a GPU machine).
test-gpu: $(VENV)/.installed
	$(PY) -m pytest -m gpu

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

lock:
	rm -rf /tmp/s3jedi-lock && $(PYTHON) -m venv /tmp/s3jedi-lock
	/tmp/s3jedi-lock/bin/pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; /tmp/s3jedi-lock/bin/pip freeze --exclude-editable; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
