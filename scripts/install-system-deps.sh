#!/usr/bin/env bash
# Install the system programs anamnesis talks to in its tests and on stage:
# PortAudio (sound cards), JACK (a real audio server without hardware), ffmpeg
# (an independent RTP/JACK peer), liblo-tools (oscsend/oscdump) and Chromium (the
# browser the dashboard's tests and bench drive through Playwright; never
# `playwright install`, which downloads a browser), Node.js (the dashboard's unit tests)
# and jconvolver (zita-convolver's fconvolver: bench/bench_room.py's peer).
# Idempotent: installs only what is missing. Needs root for apt; without it,
# prints the command to run and exits 0 (CI=true makes a missing package fatal).
set -euo pipefail
packages=(libportaudio2 jackd2 ffmpeg liblo-tools gstreamer1.0-tools gstreamer1.0-plugins-good
          chromium jconvolver)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the dashboard's unit tests (node --test web/test/); any node >= 18 will do,
# the machine's own or Debian's.
command -v node >/dev/null || missing+=(nodejs)
((${#missing[@]} == 0)) && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # jackd2 asks whether to enable realtime scheduling; answer for it.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi
echo "missing system packages: ${missing[*]}"
echo "  install them with: sudo apt-get install --no-install-recommends ${missing[*]}"
echo "  (tests that need them will skip with a reason)"
if [[ "${CI:-}" == "true" ]]; then exit 1; fi
exit 0
