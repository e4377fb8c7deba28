# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv on first use and install torch's CPU build before the rest,
# so sentence-transformers does not pull a CUDA build. A stamp file makes reruns fast.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO_INDEX := build/seeds-index

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/simqa index seeds --index $(DEMO_INDEX)
	@echo
	@echo "== Similar Q&A for seed 000 (simqa similar 000_d8a51fa88222d8b0) =="
	$(BIN)/simqa similar 000_d8a51fa88222d8b0 --index $(DEMO_INDEX) -k 4
	@echo
	@echo "== Free-text search =="
	$(BIN)/simqa search "my neck muscles twitch and my head shakes when I am nervous" --index $(DEMO_INDEX) -k 3

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf build
