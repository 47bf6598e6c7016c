# anamnesis — the two front-door commands are `make demo` and `make test`.
# Both set everything up first (a .venv with the project installed editable,
# plus the system programs the tests talk to when we are allowed to install them).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO   := out/demo

.PHONY: venv sysdeps demo test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Real peers for the tests (JACK, PortAudio, ffmpeg, liblo-tools). Installs with
# apt when run as root; elsewhere it says what is missing and the tests that need
# a peer skip with a reason (in CI, CI=true, a missing peer is an error).
sysdeps:
	bash scripts/install-system-deps.sh

demo: venv
	mkdir -p $(DEMO)
	@for p in $$($(PY) -m hub.cli render --list | cut -d' ' -f1); do \
		$(PY) -m hub.cli render $$p --out $(DEMO)/$$p.wav --plot $(DEMO)/$$p.png || exit 1; \
	done
	@echo "Rendered every seed preset into $(DEMO)/ (WAV: inputs then output; PNG: waveforms + spectrogram)."

test: venv sysdeps
	$(PY) -m pytest -q

bench: venv
	$(PY) bench/bench_models.py
	@for b in bench/bench_*.py; do [ $$b = bench/bench_models.py ] || $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache
