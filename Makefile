# anamnesis — the two front-door commands are `make demo` and `make test`.
# Both set everything up first (a .venv with the project installed editable,
# plus the system programs the tests talk to when we are allowed to install them).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
RENDERS := out/renders
# Each step of setting up prints one line ("installing … done (40 s)") and keeps pip's
# output for when it fails; `make V=1 …` shows every command and all their output.
V      ?= 0
STEP   := V=$(V) bash scripts/step.sh
# The example installation whose kernels `make venv` compiles into numba's cache (the
# one `make demo` runs); WARM=0 skips it.
WARM   ?= 1
WARM_CONFIG := deploy/octophonic.toml
ifeq ($(V),1)
Q :=
else
Q := @
endif

# torch for the latent agents (the [neural] extra): the CPU build of the machine image's
# wheel cache; any other specifier pulls a 5 GB CUDA build here (NEURAL.md). CI installs it
# (CI=true); elsewhere `make neural` does, and without it the latent tests skip.
TORCH  := torch==2.13.0

.PHONY: venv neural sysdeps demo renders docs lint test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(Q)test -x $(PY) || $(STEP) "creating the virtual environment $(VENV)" $(PYTHON) -m venv $(VENV)
	$(Q)$(STEP) "updating pip in $(VENV)" $(PY) -m pip install --upgrade pip
	$(Q)$(STEP) "installing the project and its test tools into $(VENV)" \
		$(PY) -m pip install -e '.[test]'
	$(Q)if [ "$(CI)" = true ]; then $(STEP) "installing PyTorch ($(TORCH), the [neural] extra)" \
		$(PY) -m pip install '$(TORCH)'; fi
	$(Q)if [ "$(WARM)" = 1 ]; then $(STEP) "compiling the audio kernels of $(WARM_CONFIG) (numba's cache)" \
		$(PY) -m anamnesis.hub.cli.demo --warm all $(WARM_CONFIG) || \
		echo "  (not fatal: the demo compiles them when it starts)"; fi
	$(Q)touch $(STAMP)

neural: venv
	$(Q)$(STEP) "installing PyTorch ($(TORCH), the [neural] extra)" $(PY) -m pip install '$(TORCH)'

# Real peers for the tests (JACK, PortAudio, ffmpeg, liblo-tools). Installs with
# apt when run as root; elsewhere it says what is missing and the tests that need
# a peer skip with a reason (in CI, CI=true, a missing peer is an error).
sysdeps:
	bash scripts/install-system-deps.sh

# The live demo (JOURNEYS 1): the hub with eight learning agents in the simulated
# octophonic room, the dashboard on http://127.0.0.1:8470, the listener preview on
# the default sound device (or in the browser). Only PortAudio is needed beyond the
# venv; it is installed with apt when run as root, else the preview is browser-only.
# Options pass through: make demo DEMO_ARGS="--fresh --no-audio". Ctrl-C stops it.
demo: venv
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    ! dpkg-query -W -f='$${Status}' libportaudio2 2>/dev/null | grep -q "install ok installed"; then \
		echo "installing libportaudio2 (PortAudio, for the headphone preview)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			libportaudio2 >/dev/null || echo "libportaudio2 not installed: the preview plays in the browser"; \
	fi
	$(Q)$(PY) -m anamnesis.hub.cli demo $(DEMO_ARGS)

# Every seed preset rendered offline (WAV: inputs then output; PNG: waveforms + spectrogram).
renders: venv
	mkdir -p $(RENDERS)
	@for p in $$($(PY) -m anamnesis.hub.cli render --list | cut -d' ' -f1); do \
		$(PY) -m anamnesis.hub.cli render $$p --out $(RENDERS)/$$p.wav --plot $(RENDERS)/$$p.png || exit 1; \
	done
	@echo "Rendered every seed preset into $(RENDERS)/"

# docs/osc.md: the OSC address tables, generated from the code (a test compares them).
docs: venv
	$(PY) -m anamnesis.hub.cli osc-doc --out docs/osc.md

# ruff (pyflakes, isort, pyupgrade, bugbear; configured in pyproject.toml) on the whole tree.
lint: venv
	$(VENV)/bin/ruff check agents hub tests bench scripts

test: venv sysdeps lint
	$(PY) -m pytest -q

# Every benchmark runs, also after one has failed or missed a target (exit status 1); those
# are named at the end, and make bench fails then.
BENCHES := bench/bench_models.py $(filter-out bench/bench_models.py,$(sort $(wildcard bench/bench_*.py)))
bench: venv
	@failed=""; for b in $(BENCHES); do echo "== $$b"; $(PY) $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "benchmarks that failed or missed a target:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) out .pytest_cache
