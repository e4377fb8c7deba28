# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv on first use and install torch's CPU build before the rest,
# so sentence-transformers does not pull a CUDA build. A stamp file makes reruns fast.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO_INDEX := build/seeds-index

SUITE   := build/suite
SUITE_INDEX := build/suite-index
MEDQUAD_INDEX := build/medquad-index
BENCH_CACHE := benchmarks/cache/embeddings.sqlite
RESULTS := benchmarks/results

.PHONY: demo test install clean bench-relevance bench-tune bench-speed bench-queries bench-precision bench-load bench-load-ray bench-adapt bench-scale-out bench-topics bench-start serve

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,ray,parquet,adapt]'
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
	@echo
	@echo "== Related FAQ for the same text (simqa related-faq) =="
	$(BIN)/simqa related-faq "my neck muscles twitch and my head shakes when I am nervous" --index $(DEMO_INDEX)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Relevance benchmarks (benchmarks/suite.py): LiveQA-Med 2017 questions over MedQuAD (with and
# without its synonyms, without replies), LiveQA paraphrases and RQE clinical questions over
# question-only corpora; every method on each, then the seed panels. The first run embeds about
# 180,000 texts (30-60 min on 2 cores); reruns read benchmarks/cache and take a few minutes. Embedded in
# fp32 on every machine, so the committed tables reproduce on any CPU (bench-precision measures bf16).
bench-relevance: $(STAMP)
	$(BIN)/python -m benchmarks.suite $(SUITE)
	$(BIN)/simqa bench relevance --corpus $(SUITE)/medquad/corpus.jsonl --index $(MEDQUAD_INDEX) --cache $(BENCH_CACHE) --precision fp32 \
		--queries $(SUITE)/medquad/queries-original.tsv --qrels $(SUITE)/medquad/qrels.txt \
		--title "LiveQA-Med 2017 original questions over MedQuAD" --out $(RESULTS)/liveqa-original
	$(BIN)/simqa bench relevance --index $(MEDQUAD_INDEX) \
		--queries $(SUITE)/medquad/queries-summary.tsv --qrels $(SUITE)/medquad/qrels.txt \
		--title "LiveQA-Med 2017 NLM summaries over MedQuAD" --out $(RESULTS)/liveqa-summary
	mkdir -p $(SUITE_INDEX) && ln -sfn ../medquad-index $(SUITE_INDEX)/medquad
	for corpus in medquad-nosyn medquad-qonly paraphrase rqe rqe-panels; do \
		$(BIN)/simqa index $(SUITE)/$$corpus/corpus.jsonl --index $(SUITE_INDEX)/$$corpus --cache $(BENCH_CACHE) --precision fp32 --quiet || exit 1; \
	done
	$(BIN)/simqa bench relevance --index $(SUITE_INDEX)/medquad-nosyn --queries $(SUITE)/medquad-nosyn/queries-original.tsv \
		--qrels $(SUITE)/medquad-nosyn/qrels.txt --title "LiveQA-Med original questions over MedQuAD without synonyms" \
		--out $(RESULTS)/suite/liveqa-nosyn
	$(BIN)/simqa bench relevance --index $(SUITE_INDEX)/medquad-qonly --queries $(SUITE)/medquad-qonly/queries-original.tsv \
		--qrels $(SUITE)/medquad-qonly/qrels.txt --title "LiveQA-Med original questions over MedQuAD questions only" \
		--out $(RESULTS)/suite/liveqa-qonly
	$(BIN)/simqa bench relevance --index $(SUITE_INDEX)/paraphrase --queries $(SUITE)/paraphrase/queries.tsv \
		--qrels $(SUITE)/paraphrase/qrels.txt --threshold 1 --title "LiveQA paraphrase: original question -> its NLM summary" \
		--out $(RESULTS)/suite/paraphrase
	$(BIN)/simqa bench relevance --index $(SUITE_INDEX)/rqe --queries $(SUITE)/rqe/queries.tsv \
		--qrels $(SUITE)/rqe/qrels.txt --threshold 1 --title "RQE clinical questions: original -> doctor's short form" \
		--out $(RESULTS)/suite/rqe
	$(BIN)/simqa index seeds --index $(DEMO_INDEX) --quiet
	$(BIN)/simqa bench panels --index $(DEMO_INDEX) | tee $(RESULTS)/seed-panels.txt

# simqa adapt on MedQuAD (LiveQA never trains), the indexes rebuilt with each adapted model, and the relevance
# tables beside the base model's, same run (benchmarks/adapt.py). Per seed: up to 30 min adapting and the
# re-embedding of MedQuAD (about 30 min on 2 cores in fp32); needs the indexes bench-relevance builds.
# SEEDS="0" for one seed; BENCHMARKS=all adds the question-only shapes (each corpus embedded again).
# Each benchmark's default change against the base is printed with a 95% interval over its queries.
# A blend weight is judged without training again by python -m benchmarks.adapt --blend-of MODEL_DIR.
bench-adapt: $(STAMP)
	$(BIN)/python -m benchmarks.adapt --suite $(SUITE) --base-index $(MEDQUAD_INDEX) --base-suite-index $(SUITE_INDEX) \
		--cache $(BENCH_CACHE) --seeds $(or $(SEEDS),0 1) --max-minutes 30 --benchmarks $(or $(BENCHMARKS),liveqa-original liveqa-summary)

# Related FAQ: MedQuAD's ~10,000 foci as topics, LiveQA-Med questions as queries (benchmarks/topics.py);
# builds build/topics/index from the embedding cache (about 5 minutes once MedQuAD is cached).
bench-topics: $(STAMP)
	$(BIN)/python -m benchmarks.topics --out $(RESULTS)/topics --cache $(BENCH_CACHE)

# Cold start: a fresh `simqa search` (hybrid, bm25) and `simqa serve` to /healthz, best of 3 (benchmarks/start.py).
bench-start: $(STAMP)
	$(BIN)/simqa index seeds --index $(DEMO_INDEX) --quiet
	$(BIN)/python -m benchmarks.start --index $(DEMO_INDEX) --out $(RESULTS)/speed/start.md

# The choice of the default fusion: the grid on every benchmark, leave-one-benchmark-out, a learned
# fusion held out the same way, dense pseudo-relevance feedback, and txtai's hybrid on each (needs the indexes bench-relevance builds; txtai installed here only).
bench-tune: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.txtai_peer --suite $(SUITE) --cache $(BENCH_CACHE) --out $(RESULTS)/suite/txtai.json
	$(BIN)/python -m benchmarks.fit_fusion --suite $(SUITE) --indexes $(SUITE_INDEX) --txtai $(RESULTS)/suite/txtai.json
	$(BIN)/python -m benchmarks.learned_fusion --suite $(SUITE) --indexes $(SUITE_INDEX)
	$(BIN)/python -m benchmarks.prf --suite $(SUITE) --indexes $(SUITE_INDEX)

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
	$(BIN)/python -m benchmarks.speed overlap

# bf16 against fp32 embeddings: a cold bf16 build of MedQuAD (its own empty cache, so every
# vector is bf16) and the relevance table on it; compare with liveqa-original/summary (fp32).
bench-precision: $(STAMP)
	rm -rf build/medquad-bf16 build/bf16-cache.sqlite
	time $(BIN)/simqa index $(SUITE)/medquad/corpus.jsonl --index build/medquad-bf16 --cache build/bf16-cache.sqlite --precision bf16 --quiet
	for setting in original summary; do \
		$(BIN)/simqa bench relevance --index build/medquad-bf16 --queries $(SUITE)/medquad/queries-$$setting.tsv --qrels $(SUITE)/medquad/qrels.txt \
			--methods default,bm25_question,dense_question,dense_reply --title "bf16 embeddings, $$setting questions" \
			--out $(RESULTS)/precision-bf16/$$setting; \
	done

# Load: 16 concurrent clients for 30 s against simqa serve on loopback.
bench-load: $(STAMP)
	$(BIN)/python -m benchmarks.load --index $(MEDQUAD_INDEX) --clients 16 --seconds 30

# The same load against `simqa serve` (one index; 2 shards in one process) and `simqa serve --ray local`
# (2 shard deployments), one run (benchmarks/load_ray.py); builds build/medquad-2shards from the cache.
bench-load-ray: $(STAMP)
	$(BIN)/python -m benchmarks.load_ray --index $(MEDQUAD_INDEX) --corpus $(SUITE)/medquad/corpus.jsonl \
		--sharded build/medquad-2shards --cache $(BENCH_CACHE) --clients 16 --seconds 30

# Scale-out: MedQuAD in 4 shards against one index (same top 10 with exact vectors, nDCG with
# HNSW, build times, query latency) and embedding on Ray Data with 1 and 2 actors against the
# in-process encoder, same run. About 10 minutes on 2 cores; needs the suite bench-relevance writes.
bench-scale-out: $(STAMP)
	$(BIN)/python -m benchmarks.scale_out --out $(RESULTS)/scale-out

# Serve the seeds index on http://127.0.0.1:8000 (search page at /, widget at /widget.js).
serve: $(STAMP)
	$(BIN)/simqa index seeds --index $(DEMO_INDEX) --quiet
	$(BIN)/simqa serve --index $(DEMO_INDEX)

clean:
	rm -rf build
