# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Both create the virtualenv in .venv and install the project (torch comes through pip, pinned).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install run test lint format bench bench-load bench-sketch migrate clean

help:
	@echo "make run     set up, migrate the database and start the bot"
	@echo "make test    set up and run the whole test suite"
	@echo "make lint    ruff check, format check and the type checker (mypy)"
	@echo "make bench   run the engine benchmark (about 30 min on a 2-core CPU; writes bench/results/)"
	@echo "make bench-load  20 users at once through the bot, real engine (minutes)"
	@echo "make bench-sketch  the sketch: speed, the starts' curves (docs/sketch-init.png), 512 px schedules,"
	@echo "                   then the first picture in chat through the bot (bench/first_picture.py)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m bot

migrate: install
	$(PY) -m bot migrate

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m bench.engine

bench-load: install
	$(PY) -m bench.load

bench-sketch: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.sketch
	$(PY) -m bench.first_picture

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
