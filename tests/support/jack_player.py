"""A JACK client (through PortAudio) that plays a sine until SIGTERM: the test peer
that feeds an agent's mic in ``test_jack.py``.

    python tests/support/jack_player.py FREQ_HZ AMPLITUDE CLIENT_NAME

Prints ``playing`` once the stream runs. Uses the server in ``JACK_DEFAULT_SERVER``.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from anamnesis.agents.audio.backends import import_sounddevice, set_jack_client_name

SR = 48000


def main() -> int:
    freq, amp, name = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3].encode()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sd = import_sounddevice()
    set_jack_client_name(sd, name)
    position = [0]

    def callback(outdata, frames, time_info, status):
        n = np.arange(position[0], position[0] + frames)
        outdata[:, 0] = amp * np.sin(2 * np.pi * freq * n / SR)
        position[0] += frames

    with sd.OutputStream(samplerate=SR, channels=1, dtype="float32", blocksize=256,
                         callback=callback):
        print("playing", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0


if __name__ == "__main__":
    sys.exit(main())
