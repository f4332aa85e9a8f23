# splade: the guide's make targets plus setup, quickstart and tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SPLADE := $(BIN)/splade
OUT    ?= outputs

.PHONY: setup quickstart test lint bench bench-quality opensearch-up opensearch-down up down index eval
# The guide's per-version targets (train-v22, train-v22-bg, logs-v22, tensorboard-v22, and the same for
# v23) are pattern rules below; make ignores pattern rules for .PHONY targets, so they are not listed.

$(BIN)/splade: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(BIN)/splade

setup: $(BIN)/splade  ## create .venv and install splade with its test tools

quickstart: setup  ## the main job end to end on the bundled sample: data -> train -> export -> index -> eval
	HF_HUB_OFFLINE=1 $(SPLADE) quickstart --out $(OUT)/quickstart

test: setup  ## the test suite (tests needing ../shared skip with a reason when it is absent)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -rs

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_encode.py
	$(BIN)/python benchmarks/bench_index.py
	$(BIN)/python benchmarks/bench_bm25.py

bench-quality: setup  ## hours on a CPU: v23 from me5-small-koen against BM25, dense and sentence-transformers
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_quality.py

train-%: setup  ## train-v22 / train-v23 in the foreground
	$(SPLADE) train $* --config configs/train_$*.yaml

train-%-bg: setup  ## the same in the background, logging to $(OUT)/train_<v>.log
	@mkdir -p $(OUT)
	nohup $(SPLADE) train $* --config configs/train_$*.yaml > $(OUT)/train_$*.log 2>&1 &
	@echo "training $* in the background; follow it with: make logs-$*"

logs-%:
	tail -f $(OUT)/train_$*.log

tensorboard-%: setup
	$(BIN)/tensorboard --logdir $(OUT)/train_$*/tensorboard

opensearch-up:  ## OpenSearch with the neural-search and nori plugins (needs Docker)
	docker compose up -d --build

opensearch-down:
	docker compose down

# The stack of docker-compose.yml: OpenSearch (+ nori) and the GPU application image `app`. `index` and `eval`
# run in `app` under torchrun, one process per GPU (GPUS); every process encodes its share of the corpus.
COMPOSE ?= docker compose
GPUS    ?= 1
MODEL   ?= models/splade-v23
CORPUS  ?= data/beir/msmarco-ko
INDEX   ?= msmarco-ko
DATASET ?= $(CORPUS)
REPORT  ?= $(OUT)/report
RUN_APP := $(COMPOSE) --profile app run --rm --entrypoint torchrun app --standalone --nproc_per_node $(GPUS) -m splade

up:  ## build the images, start OpenSearch and wait until it is healthy
	$(COMPOSE) --profile app build
	$(COMPOSE) up -d --wait opensearch

down:  ## stop the stack (the index data volume stays; `docker compose down -v` removes it)
	$(COMPOSE) --profile app down

index:  ## encode CORPUS with MODEL on GPUS GPUs into the OpenSearch alias INDEX
	$(RUN_APP) index --model $(MODEL) --corpus $(CORPUS) --index $(INDEX) --backend opensearch

eval:  ## evaluate MODEL on DATASET through OpenSearch against BM25, report in REPORT
	$(RUN_APP) eval --dataset $(DATASET) --splade $(MODEL) --backend opensearch --out $(REPORT)
