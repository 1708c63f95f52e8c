# Two entry points for a newcomer (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install fashion-mnist demo test test-fast lint clean

$(BIN)/longtail: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1" -e ".[detection,export,timm,test]"
	touch $@

install: $(BIN)/longtail

# Fashion-MNIST comes from Debian's dataset-fashion-mnist when we can install it; otherwise the demo
# lets torchvision download it (needs internet) and the tests that need its images are skipped.
fashion-mnist:
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -q >/dev/null && \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
	  echo "note: dataset-fashion-mnist is not installed: the demo lets torchvision download Fashion-MNIST; tests that need it are skipped"

demo: install fashion-mnist
	$(BIN)/longtail demo

test: install fashion-mnist
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks references

test-fast: install fashion-mnist
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs
