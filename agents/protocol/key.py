"""The installation key: a file of 64 hex digits (mode 0600) shared by the hub and the
agents of one installation; it signs the agents' TXT records
(:func:`anamnesis.agents.protocol.txt.sign`). :func:`generate_key` makes one (never over
an existing file), :func:`load_key` reads one back with a clear error for a bad file."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)


#: Shortest accepted installation key (bytes).
MIN_KEY_BYTES = 16
#: Bytes of key that :func:`generate_key` makes.
KEY_BYTES = 32


# ---------------------------------------------------------------------------
# The installation key
# ---------------------------------------------------------------------------


def generate_key(path: str | os.PathLike[str]) -> bytes:
    """Create a new installation key file (64 hex digits, mode 0600) and return the key.

    Refuses to overwrite an existing file (``FileExistsError``): replacing an
    installation's key orphans every agent that has the old one.
    """
    key = secrets.token_bytes(KEY_BYTES)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(
            f"installation key file {target} already exists; delete it first to replace the key "
            "(every agent then needs the new file)") from None
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(target, 0o600)  # in case the umask widened nothing, be explicit
    return key


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read an installation key file (hex digits, or raw bytes) and return the key.

    Raises ``ValueError`` with a clear message if the file is missing, empty or
    shorter than :data:`MIN_KEY_BYTES` bytes. Warns when others may read it.
    """
    target = Path(path)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        raise ValueError(
            f"installation key file {target} does not exist; create it on the hub "
            "(`anamnesis keygen`) and copy it to every agent host") from None
    except IsADirectoryError:
        raise ValueError(f"installation key file {target} is a directory") from None
    text = raw.strip()
    if not text:
        raise ValueError(f"installation key file {target} is empty")
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = text
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"installation key in {target} is too short: {len(key)} bytes, "
            f"at least {MIN_KEY_BYTES} needed")
    mode = target.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("installation key file %s is readable by others (mode %o); chmod 600 it",
                    target, stat.S_IMODE(mode))
    return key


__all__ = ["generate_key", "load_key"]
