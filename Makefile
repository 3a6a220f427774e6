# vicap: two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# the install is redone only when pyproject.toml changes
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

export RAY_USAGE_STATS_ENABLED=0
export BENTOML_DO_NOT_TRACK=true
export RAY_AUTH_MODE=disabled

.PHONY: venv browser demo test bench lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first, from the CPU wheel: an unpinned torch would pull several GB of CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: venv
	$(VENV)/bin/vicap demo

# the status page's browser tests drive Debian's chromium (Playwright cannot download its own here)
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -q && apt-get install -y -q chromium fonts-noto-cjk; } || \
		echo "chromium is not installed: the browser tests will skip (apt-get install chromium fonts-noto-cjk)"

test: venv browser
	$(PY) -m pytest

bench: venv
	$(PY) -m bench

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) ../shared/tools/check_layers.py

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
