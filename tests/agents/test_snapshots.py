"""Snapshot files: atomic writes, verification, the autosave's second generation."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from anamnesis.agents import snapshots
from anamnesis.agents.models.autoregnn import AutoRegNN
from anamnesis.agents.snapshots import (
    AUTOSAVE,
    AUTOSAVE_PREV,
    CorruptSnapshot,
    Snapshot,
    SnapshotStore,
    StateDirLocked,
    check_name,
    read_snapshot_sync,
    write_snapshot_sync,
)


def _snap(seed: int = 0) -> Snapshot:
    model = AutoRegNN(seed=seed)
    return Snapshot(state=model.get_state(), params={"lr": 0.3, "act_mix": [0.5] * 8},
                    model="autoregnn", agent="a1")


def _open(tmp_path: Path) -> SnapshotStore:
    store = SnapshotStore(tmp_path / "a1", agent_id="a1", model_kind="autoregnn")
    store.open()
    return store


def test_round_trip_keeps_every_array_and_parameter(tmp_path):
    snap = _snap(4)
    write_snapshot_sync(tmp_path / "s.npz", snap)
    back = read_snapshot_sync(tmp_path / "s.npz")
    assert set(back.state) == set(snap.state)
    for key in snap.state:
        assert_array_equal(back.state[key], snap.state[key])
    assert back.params == {"lr": 0.3, "act_mix": [0.5] * 8}
    assert (back.model, back.agent) == ("autoregnn", "a1")
    assert back.digest() == snap.digest()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    write_snapshot_sync(path, _snap(1))
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(snapshots.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot_sync(path, _snap(2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage", "digest", "nan"])
def test_damaged_files_are_reported_as_corrupt(tmp_path, damage):
    path = tmp_path / "s.npz"
    snap = _snap()
    if damage == "nan":
        snap.state["W1"][0, 0] = np.nan
    write_snapshot_sync(path, snap)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        # flip a byte inside the first array's data (its CRC no longer matches)
        with zipfile.ZipFile(path) as z:
            info = z.infolist()[0]
        data[info.header_offset + 30 + len(info.filename) + 80] ^= 0xFF
    elif damage == "empty":
        data = bytearray()
    elif damage == "garbage":
        data = bytearray(os.urandom(500))
    elif damage == "digest":
        with zipfile.ZipFile(path) as z:
            meta = json.loads(np.lib.format.read_array(z.open("meta.npy")).tobytes())
        meta["digest"] = "0" * 64
        arrays = {n: np.array(v) for n, v in np.load(path).items() if n != "meta"}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptSnapshot):
        read_snapshot_sync(path)


def test_autosave_keeps_the_previous_generation_and_falls_back_to_it(tmp_path, caplog):
    store = _open(tmp_path)
    first, second = _snap(1), _snap(2)
    store.save_autosave_sync(first.state, {"lr": 0.1})
    store.save_autosave_sync(second.state, {"lr": 0.2})
    assert store.load_autosave_sync().params == {"lr": 0.2}
    # the latest autosave is damaged: the previous one is used, and the log says why
    latest = tmp_path / "a1" / AUTOSAVE
    latest.write_bytes(latest.read_bytes()[:100])
    snap = store.load_autosave_sync()
    assert snap is not None and snap.params == {"lr": 0.1}
    assert_array_equal(snap.state["W1"], first.state["W1"])
    assert f"cannot resume from {latest}" in caplog.text
    # both damaged: None (start fresh), never an exception
    prev = tmp_path / "a1" / AUTOSAVE_PREV
    prev.write_bytes(b"not a zip")
    assert store.load_autosave_sync() is None
    store.close()


def test_autosave_of_another_model_is_not_resumed(tmp_path, caplog):
    store = _open(tmp_path)
    store.save_autosave_sync(_snap().state, {})
    store.close()
    other = SnapshotStore(tmp_path / "a1", agent_id="a1", model_kind="unlearn")
    other.open()
    assert other.load_autosave_sync() is None
    assert "holds a autoregnn model; this agent runs unlearn" in caplog.text
    other.close()


async def test_named_snapshots_save_load_and_list(tmp_path):
    store = _open(tmp_path)
    await store.save("dusk", _snap(1).state, {"lr": 0.5})
    await store.save("night-2", _snap(2).state, {"lr": 0.6})
    assert store.names() == ["dusk", "night-2"]
    loaded = await store.load("dusk")
    assert loaded.params == {"lr": 0.5}
    with pytest.raises(ValueError, match="unknown snapshot 'dawn'"):
        await store.load("dawn")
    store.close()
    reopened = _open(tmp_path)  # names come back from the directory
    assert reopened.names() == ["dusk", "night-2"]
    reopened.close()


async def test_recalling_a_corrupt_named_snapshot_is_a_clear_error(tmp_path):
    store = _open(tmp_path)
    await store.save("dusk", _snap().state, {})
    path = store.snapshot_dir / "dusk.npz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match=r"snapshot 'dusk' is corrupt: unreadable"):
        await store.load("dusk")
    store.close()


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "x" * 65, "sp ace", 3, None])
def test_bad_snapshot_names_are_rejected(name):
    with pytest.raises(ValueError, match="snapshot name must be 1-64 letters"):
        check_name(name)


async def test_the_table_of_named_snapshots_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshots, "MAX_SNAPSHOTS", 2)
    store = _open(tmp_path)
    await store.save("a", _snap().state, {})
    await store.save("b", _snap().state, {})
    await store.save("a", _snap().state, {})  # overwriting is fine
    with pytest.raises(ValueError, match=r"too many snapshots \(2\)"):
        await store.save("c", _snap().state, {})
    store.close()


def test_two_agents_cannot_share_a_state_directory(tmp_path):
    store = _open(tmp_path)
    second = SnapshotStore(tmp_path / "a1", agent_id="a1", model_kind="autoregnn")
    with pytest.raises(StateDirLocked, match="another agent is running with the state directory"):
        second.open()
    store.close()
    second.open()  # free again
    second.close()


def test_stale_temporary_files_are_removed_on_open(tmp_path):
    (tmp_path / "a1" / "snapshots").mkdir(parents=True)
    stale = tmp_path / "a1" / ".autosave.npz.1234.tmp"
    stale.write_bytes(b"half a file")
    store = _open(tmp_path)
    assert not stale.exists()
    store.close()
