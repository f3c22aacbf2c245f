# Two commands for a fresh Debian machine (run as root, or with sudo available):
#   make demo   set up, then run the main job on the embedded default model
#   make test   set up, then run every test
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Debian packages: the measured HRTF (libmysofa1), a real OSC peer for tests (liblo-tools),
# g++ (Inductor's CPU code: --accel compile and aot, which make demo runs), and what
# tests/bridges builds the bridges with: mono-mcs (Unity's C# core), lua5.4 + lua-socket
# (REAPER), grpc++ and protoc (Unreal's C++ session).
APT_PACKAGES := libmysofa1 liblo-tools g++ mono-mcs lua5.4 lua-socket \
  pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler-grpc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test lint bench proto serve clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing swansphere into $(VENV) (first time: about 2 minutes)"
	@$(PY) -m pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	@$(PY) -c "import swansphere, torch, pyo" >/dev/null 2>&1 || { echo "set-up failed: swansphere did not import"; exit 1; }
	@touch $@

demo: setup
	$(VENV)/bin/swansphere demo --out out/demo --accel aot

test: setup
	$(PY) -m ruff check backend training tests
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check backend training tests
	$(PY) -m ruff format --check backend training tests

bench: setup
	$(VENV)/bin/swansphere bench render --json

# Regenerate the committed gRPC/protobuf modules (backend/swansphere/serve/_generated)
# from protos/swansphere/v1/*.proto; tests/serve/test_protogen.py fails when they are stale.
proto: setup
	$(PY) -m swansphere.serve.protogen

serve: setup
	$(VENV)/bin/swansphere serve

clean:
	rm -rf $(VENV) out
