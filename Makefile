# Two commands: `make demo` and `make test`. Each sets up what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
OUT    ?= out
DEMO_PERSONS ?= 2000
PYTEST_WORKERS ?= 2

export GX_ANALYTICS_ENABLED := false

# Where the bundled project (examples/gmp) finds the estate, the product and its ledger.
WAVE_ENV = CONTINUITY_ESTATE=$(abspath $(OUT))/estate \
	CONTINUITY_TARGET=sqlite:///$(abspath $(OUT))/product.sqlite \
	CONTINUITY_LEDGER=sqlite:///$(abspath $(OUT))/ledger.sqlite

.PHONY: setup demo test test-slow lint bench clean

$(STAMP): setup.cfg pyproject.toml
	@# Debian's Chromium renders, tests and prints the reports (docs/reports.md); no browser is
	@# downloaded by a test tool. poppler-utils' pdftotext lets the tests read the printed PDF.
	{ command -v chromium && command -v pdftotext; } >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  chromium poppler-utils; } || \
	  echo "warning: could not install Debian's chromium and poppler-utils (as root: apt-get install)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test,postgres,mariadb]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	rm -rf $(OUT)
	$(BIN)/continuity estate generate --out $(OUT)/estate --persons $(DEMO_PERSONS) --seed 1 --defects
	@echo
	@echo "Every quirk of the estate, measured on its databases (docs/estate.md):"
	$(BIN)/continuity estate quirks $(OUT)/estate
	@echo
	$(BIN)/continuity target init sqlite:///$(OUT)/product.sqlite
	@echo
	@echo "Migration: the whole estate, one wave, with the bundled project (examples/gmp): its suites"
	@echo "validate the sources before loading and the product after (warnings: the estate's quirks)."
	$(WAVE_ENV) $(BIN)/continuity run all --project examples/gmp --json $(OUT)/run.json
	$(WAVE_ENV) $(BIN)/continuity status --project examples/gmp
	@echo
	@echo "Validation of the estate's damaged target with the bundled suites: the crime held twice is"
	@echo "a critical failure (exit 1); the sources' quirks are expected warnings (docs/validators.md)."
	$(WAVE_ENV) $(BIN)/continuity validate --project examples/gmp --side target --show 1 \
	  --target sqlite:///$(abspath $(OUT))/estate/target_defects.sqlite; \
	  status=$$?; test $$status -eq 1 || { echo "expected exit 1, got $$status"; exit 1; }
	@echo
	@echo "Reconciliation of the migrated product: every class clean (exit 0)."
	$(BIN)/continuity reconcile --estate $(OUT)/estate --target sqlite:///$(abspath $(OUT))/product.sqlite --show 0
	@echo
	@echo "Reconciliation of the estate's damaged target: every planted defect (defects.json) found (exit 1)."
	$(BIN)/continuity reconcile --estate $(OUT)/estate --damaged --json $(OUT)/reconciliation.json; \
	  status=$$?; test $$status -eq 1 || { echo "expected exit 1, got $$status"; exit 1; }
	@echo
	@echo "Thirty days of live use (continuity estate evolve), then a delta wave: only what changed"
	@echo "is migrated, and the whole estate reconciles clean again (DELETED_AT_SOURCE: deleted duplicates)."
	$(BIN)/continuity estate evolve $(OUT)/estate --days 30
	$(WAVE_ENV) $(BIN)/continuity run all --project examples/gmp --delta --no-search-index --json $(OUT)/delta.json
	$(WAVE_ENV) $(BIN)/continuity reconcile --project examples/gmp --show 0
	@echo
	@echo "The evidence a data owner signs (docs/reports.md): JSON, masked HTML, PDF and CSVs."
	$(WAVE_ENV) $(BIN)/continuity report --project examples/gmp --out $(OUT) --pdf
	$(WAVE_ENV) $(BIN)/continuity verify $(OUT)/report.json --project examples/gmp
	@echo
	@echo "Done. $(OUT)/estate holds the legacy and PoliceWorks databases, gazetteer.csv, the ideal"
	@echo "target, its damaged copy with defects.json and the ground truth; $(OUT)/product.sqlite is"
	@echo "the migrated product ($(OUT)/run.json: the run's counts), $(OUT)/ledger.sqlite the audit"
	@echo "ledger; $(OUT)/reconciliation.json holds every finding of the damaged run."
	@echo "The report: $(OUT)/report.html (open it in a browser), $(OUT)/report.json (the evidence),"
	@echo "$(OUT)/report.pdf and $(OUT)/exceptions/*.csv (a list per class and disposition with exceptions;"
	@echo "none here: the load is clean)."

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) -m "not slow"

test-slow: setup
	$(BIN)/pytest -q -m slow

bench: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(OUT) $(VENV) .mypy_cache .ruff_cache
