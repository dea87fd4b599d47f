# keygov — the two set-up commands of the README, and a few helpers.
#
#   make run    keygov on the embedded default (SQLite, in-process tasks) with the bundled AWS
#               emulator and a demo organisation, on http://127.0.0.1:8000
#   make test   the test suite against PostgreSQL and Redis (started here when they are down)

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Arguments for pytest, e.g. make test ARGS="-k credential_report -x"
ARGS ?=

# The test command's services; a DATABASE_URL or REDIS_URL already in the environment wins.
TEST_DATABASE_URL := $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/keygov)
TEST_REDIS_URL := $(or $(REDIS_URL),redis://127.0.0.1:6379/0)

.PHONY: help run test lint check services clean

help:
	@echo "make run    run keygov with the bundled AWS emulator on http://127.0.0.1:8000"
	@echo "make test   run the tests (starts the local PostgreSQL and Redis when they are down)"
	@echo "make lint   ruff check and ruff format --check"
	@echo "make check  manage.py check and makemigrations --check"
	@echo "make clean  remove .venv (the embedded database in var/ stays)"

# The virtualenv, made by a Python that fits pyproject.toml's requires-python.
$(PY):
	@python=$$(scripts/find-python.sh) && \
	  echo "Creating $(VENV) with $$python ($$($$python --version))" && \
	  "$$python" -m venv $(VENV)

# One stamp per extra: pip runs again only when pyproject.toml changes (or the venv is new).
$(VENV)/.installed-%: pyproject.toml | $(PY)
	@echo "Installing keygov[$*] into $(VENV) (the first time takes a minute or two)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e ".[$*]"
	@touch $@

run: $(VENV)/.installed-demo
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo

test: $(VENV)/.installed-dev
	@DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" scripts/services.sh
	DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" $(PY) -m pytest $(ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

check: $(VENV)/.installed-dev
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

services:
	@DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" scripts/services.sh

clean:
	rm -rf $(VENV)
