# One virtual environment outside the clone, keyed on pyproject.toml, reused between runs.
PYTHON ?= python3
VENV ?= $(HOME)/.cache/counterfeit-detector/venv-$(shell sha256sum pyproject.toml | cut -c1-12)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= var

.PHONY: install test serve bench clean-venv venv-bin

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch and torchvision first, pinned to the releases this machine keeps on disk
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

# The editable install is refreshed every time: the reused venv may point at an older clone.
install: $(STAMP)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .

test: install
	$(BIN)/python -m pytest

serve: install
	$(BIN)/cfd serve --data-dir $(DATA_DIR) --init-admin-key $(DATA_DIR)/admin.key

bench: install
	$(BIN)/python benchmarks/embedding_speed.py

venv-bin:
	@echo $(BIN)

clean-venv:
	rm -rf $(VENV)
