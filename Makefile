# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv on first use and install torch's CPU build before the rest,
# so sentence-transformers does not pull a CUDA build. A stamp file makes reruns fast.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO_INDEX := build/seeds-index

LIVEQA  := build/liveqa
MEDQUAD_INDEX := build/medquad-index
BENCH_CACHE := benchmarks/cache/embeddings.sqlite
RESULTS := benchmarks/results

.PHONY: demo test install clean bench-relevance bench-tune bench-speed bench-queries bench-precision bench-load serve

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

# Relevance benchmark: TREC 2017 LiveQA-Med questions over MedQuAD (../shared/datasets).
# The first run embeds MedQuAD (about 15-25 min on 2 cores); reruns read benchmarks/cache.
bench-relevance: $(STAMP)
	$(BIN)/python -m benchmarks.liveqa $(LIVEQA)
	$(BIN)/simqa bench relevance --corpus $(LIVEQA)/medquad.jsonl --index $(MEDQUAD_INDEX) --cache $(BENCH_CACHE) \
		--queries $(LIVEQA)/queries-original.tsv --qrels $(LIVEQA)/qrels.txt \
		--title "LiveQA-Med 2017 original questions over MedQuAD" --out $(RESULTS)/liveqa-original
	$(BIN)/simqa bench relevance --index $(MEDQUAD_INDEX) \
		--queries $(LIVEQA)/queries-summary.tsv --qrels $(LIVEQA)/qrels.txt \
		--title "LiveQA-Med 2017 NLM summaries over MedQuAD" --out $(RESULTS)/liveqa-summary
	$(BIN)/simqa index seeds --index $(DEMO_INDEX) --quiet
	$(BIN)/simqa bench panels --index $(DEMO_INDEX) | tee $(RESULTS)/seed-panels.txt

# Cross-validated choice of the default fusion (needs the index bench-relevance builds).
bench-tune: $(STAMP)
	$(BIN)/python -m benchmarks.tune_fusion --index $(MEDQUAD_INDEX)

# Speed: builds, per-stage query latency, rank-bm25 and txtai peers (txtai installed here only),
# synthetic corpora to 1M consultations. About an hour on 2 cores; needs the index bench-relevance builds.
bench-speed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.speed medquad
	$(BIN)/python -m benchmarks.speed scale --sizes 10000,100000,1000000

# Query latency only, simqa and txtai on MedQuAD, same run: for measuring another machine without
# the cold builds (txtai's indexes are built once into build/speed, simqa's come from the cache;
# needs the index bench-relevance builds).
bench-queries: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.speed queries

# bf16 against fp32 embeddings: a cold bf16 build of MedQuAD (its own empty cache, so every
# vector is bf16) and the relevance table on it; compare with liveqa-original/summary (fp32).
bench-precision: $(STAMP)
	rm -rf build/medquad-bf16 build/bf16-cache.sqlite
	time $(BIN)/simqa index $(LIVEQA)/medquad.jsonl --index build/medquad-bf16 --cache build/bf16-cache.sqlite --precision bf16 --quiet
	for setting in original summary; do \
		$(BIN)/simqa bench relevance --index build/medquad-bf16 --queries $(LIVEQA)/queries-$$setting.tsv --qrels $(LIVEQA)/qrels.txt \
			--methods default,bm25_question,dense_question,dense_reply --title "bf16 embeddings, $$setting questions" \
			--out $(RESULTS)/precision-bf16/$$setting; \
	done

# Load: 16 concurrent clients for 30 s against simqa serve on loopback.
bench-load: $(STAMP)
	$(BIN)/python -m benchmarks.load --index $(MEDQUAD_INDEX) --clients 16 --seconds 30

# Serve the seeds index on http://127.0.0.1:8000 (search page at /, widget at /widget.js).
serve: $(STAMP)
	$(BIN)/simqa index seeds --index $(DEMO_INDEX) --quiet
	$(BIN)/simqa serve --index $(DEMO_INDEX)

clean:
	rm -rf build
