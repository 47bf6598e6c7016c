"""The hub's SQLite store, on real databases in temporary directories."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from anamnesis.hub.core.async_store import AsyncStore
from anamnesis.hub.core.store import (
    DB_NAME,
    SceneAgent,
    Store,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    decode_state,
    encode_state,
)
from anamnesis.hub.core.store_schema import MIGRATIONS, SCHEMA_VERSION, Migration
from anamnesis.hub.installation.check import load_config

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W1": rng.uniform(-1, 1, (8, 12)), "b1": rng.uniform(-1, 1, 8),
            "W2": rng.uniform(-1, 1, 8), "b2": rng.uniform(-1, 1, 1)}


def fill(store: Store) -> dict[str, object]:
    """Write one of everything; return what was written."""
    config = load_config(DEPLOY / "ring3.toml")
    store.set_config(config.to_toml())
    routes = {"n1->n2": {"from": "n1", "to": "n2", "highpass_hz": 2.0},
              "circle": {"agents": ["n1", "n2", "n3"], "gain": 0.2}}
    store.replace_routes(routes)
    store.set_params("n1", {"lr": 0.8, "ridge": 1e-5, "act_mix": np.linspace(0, 1, 10)})
    store.set_params("n2", {"lr": 0.9})
    snap = store.save_snapshot("n1", "morning", "autoregnn", encode_state(state(1)))
    store.save_scene("dusk", {"n1": SceneAgent({"lr": 0.3}, state=encode_state(state(2)), model="autoregnn"),
                              "n2": SceneAgent({"lr": 0.7}, snapshot_id=snap),
                              "n3": SceneAgent({"lr": 0.1})}, meta={"note": "after the opening"})
    store.log_event("adopted", "agent n1 adopted", agent_id="n1", data={"signed": True})
    return {"config": config, "routes": routes, "snap": snap}


def test_round_trips(tmp_path):
    with Store.in_state_dir(tmp_path / "state") as store:
        written = fill(store)
        assert store.config() == written["config"].to_toml()
        assert store.routes() == written["routes"]
        assert list(store.routes()) == ["n1->n2", "circle"]       # order kept
        store.put_route("n2->n1", {"from": "n2", "to": "n1", "lowpass_hz": 10.0})
        store.put_route("n1->n2", {"from": "n1", "to": "n2", "gain": 0.5})
        assert list(store.routes()) == ["n1->n2", "circle", "n2->n1"]
        assert store.routes()["n1->n2"]["gain"] == 0.5
        assert store.delete_route("circle") and not store.delete_route("circle")
        params = store.params()
        assert params["n1"]["act_mix"] == pytest.approx(list(np.linspace(0, 1, 10)), abs=0)
        store.set_params("n1", {"lr": 0.4})                        # merges
        assert store.params("n1")["n1"] == {**params["n1"], "lr": 0.4}
        # a forgotten agent's parameters go, and only its own
        assert store.delete_params("n2") == 1 and store.delete_params("n2") == 0
        assert set(store.params()) == {"n1"} and store.params("n2") == {}
        info, data = store.snapshot(written["snap"])
        assert (info.agent_id, info.name, info.model) == ("n1", "morning", "autoregnn")
        for key, value in state(1).items():
            assert_array_equal(decode_state(data)[key], value)
        scene = store.scene("dusk")
        assert scene.meta == {"note": "after the opening"}
        assert scene.agents["n2"].snapshot_id == written["snap"]
        assert scene.agents["n3"].snapshot_id is None and scene.agents["n3"].params == {"lr": 0.1}
        own = store.snapshot(scene.agents["n1"].snapshot_id)
        assert own[0].name == "scene/dusk"
        assert_array_equal(decode_state(own[1])["W1"], state(2)["W1"])
        (event,) = store.events()
        assert (event.kind, event.agent_id, event.data) == ("adopted", "n1", {"signed": True})


def test_restart_restores_everything(tmp_path):
    with Store.in_state_dir(tmp_path) as store:
        fill(store)
        before = store.load_all()
    with Store.in_state_dir(tmp_path) as store:
        after = store.load_all()
        assert after == before
        assert after.scenes == ["dusk"] and len(after.snapshots) == 2
        assert store.schema_version == SCHEMA_VERSION
        assert len(store.applied_migrations()) == len(MIGRATIONS)  # not applied twice


def test_scenes_replace_and_delete_their_own_snapshots(tmp_path):
    with Store(tmp_path / DB_NAME) as store:
        fill(store)
        old = store.scene("dusk").agents["n1"].snapshot_id
        store.save_scene("dusk", {"n1": SceneAgent({"lr": 0.5}, state=encode_state(state(3)),
                                                   model="autoregnn")})
        scene = store.scene("dusk")
        assert set(scene.agents) == {"n1"} and scene.agents["n1"].snapshot_id != old
        with pytest.raises(KeyError):
            store.snapshot(old)                                   # the replaced scene snapshot is gone
        assert store.find_snapshot("n1", "morning") is not None  # a named snapshot stays
        keep = store.find_snapshot("n1", "morning").id
        store.save_scene("night", {"n1": SceneAgent({}, snapshot_id=keep)})
        with pytest.raises(StoreError, match=r"snapshot \d+ is used by scene\(s\) night"):
            store.delete_snapshot(keep)
        assert store.delete_scene("dusk") and not store.delete_scene("dusk")
        assert store.scenes() == ["night"]
        assert [s.name for s in store.snapshots("n1")] == ["morning"]
        with pytest.raises(KeyError, match="no scene 'dusk'"):
            store.scene("dusk")


def test_multi_row_writes_are_atomic(tmp_path):
    with Store(tmp_path / DB_NAME) as store:
        fill(store)
        before = store.load_all()
        with pytest.raises(ValueError, match="no snapshot 999"):
            store.save_scene("broken", {"n1": SceneAgent({"lr": 0.2}, state=encode_state(state(4)),
                                                         model="autoregnn"),
                                        "n2": SceneAgent({}, snapshot_id=999)})
        with pytest.raises(ValueError, match="non-finite"):
            store.set_params("n3", {"lr": 0.1, "ridge": float("nan")})
        with pytest.raises(ValueError, match="not a readable npz"):
            store.save_scene("dusk", {"n1": SceneAgent({}, state=b"garbage", model="autoregnn")})
        assert store.load_all() == before                        # nothing of those writes stayed
        assert "broken" not in store.scenes() and "n3" not in store.params()


def test_wal_mode_and_a_reader_while_a_writer_holds_a_transaction(tmp_path):
    path = tmp_path / DB_NAME
    with Store(path) as store:
        fill(store)
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert (tmp_path / f"{DB_NAME}-wal").exists()
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO events (ts, kind, message) VALUES (0, 'x', 'uncommitted')")
        with Store(path, readonly=True, busy_timeout_s=0.0) as reader:
            started = time.perf_counter()
            assert reader.event_count() == 1                      # the committed state, at once
            assert time.perf_counter() - started < 0.5
            writer.execute("COMMIT")
            assert reader.event_count() == 2
            with pytest.raises(StoreError, match="read-only"):
                reader.set_params("n1", {"lr": 1.0})
        writer.close()
        raw.close()


def test_concurrent_reader_while_writing(tmp_path):
    path = tmp_path / DB_NAME
    Store(path).close()
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            with Store(path) as store:
                for i in range(200):
                    store.log_event("tick", f"event {i}", data={"i": i})
                    store.set_params("a", {"i": i})
        except Exception as exc:  # noqa: BLE001 — reported by the main thread below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write, name="test-writer")
    thread.start()
    seen = []
    with Store(path, readonly=True) as reader:
        while not done.is_set():
            count = reader.event_count()
            params = reader.params().get("a", {}).get("i", -1)
            seen.append((count, params))
        seen.append((reader.event_count(), reader.params()["a"]["i"]))
    thread.join()
    assert not errors
    counts = [c for c, _ in seen]
    assert counts == sorted(counts) and counts[-1] == 200        # never goes back, sees all
    assert seen[-1][1] == 199 and len(seen) > 2


def test_event_log_is_bounded(tmp_path):
    with Store(tmp_path / DB_NAME, max_events=50) as store:
        ids = store.log_events([("k", f"m{i}", None, None, None) for i in range(120)])
        assert store.event_count() == 50
        events = store.events(limit=1000)
        assert [e.message for e in events] == [f"m{i}" for i in range(70, 120)]
        assert [e.id for e in store.events(limit=3, after_id=ids[100])] == ids[101:104]
        store.log_event("k", "x" * 10_000, data={"blob": "y" * 10_000})
        last = store.events(limit=1)[0]
        assert len(last.message) == 4000 and "truncated" in last.data
        old = time.time() - 40 * 86400
        store.log_event("old", "from last month", ts=old)
    with Store(tmp_path / DB_NAME, max_events=50, max_event_age_days=30) as store:
        assert store.events(kind="old") == []                     # pruned by age on open
        assert store.event_count() == 49


def test_schema_version_and_migrations(tmp_path):
    path = tmp_path / DB_NAME
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == MIGRATIONS[-1].version
        assert [m[0] for m in store.applied_migrations()] == [m.version for m in MIGRATIONS]
        store.set_params("a", {"lr": 0.5})
    extra = Migration(SCHEMA_VERSION + 1, "test: a column for notes",
                      ("ALTER TABLE scenes ADD COLUMN notes TEXT",))
    with Store(path, migrations=(*MIGRATIONS, extra)) as store:
        assert store.schema_version == SCHEMA_VERSION + 1
        assert store.params() == {"a": {"lr": 0.5}}                # data kept across the upgrade
        assert store.applied_migrations()[-1][:2] == (extra.version, extra.description)
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}, made by a newer anamnesis"):
        Store(path)


def test_corrupt_and_locked_databases_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreCorrupt, match=r"damaged or not a SQLite database.*move it aside"):
        Store(bad)
    path = tmp_path / DB_NAME
    Store(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreLocked, match=r"locked by another process \(another hub"):
        Store(path, busy_timeout_s=0.1)
    holder.execute("ROLLBACK")
    holder.close()
    Store(path).close()
    with Store(path) as store:
        snap = store.save_snapshot("a", "s", "autoregnn", encode_state(state(0)))
        store._db.execute("UPDATE snapshots SET data = ? WHERE id = ?",
                          (encode_state(state(9)), snap))
        with pytest.raises(StoreCorrupt, match="does not match its digest"):
            store.snapshot(snap)
    with pytest.raises(StoreError, match="no hub database"):
        Store(tmp_path / "missing.sqlite3", readonly=True)


async def test_async_store_runs_in_one_named_thread_and_shuts_it_down(tmp_path):
    store = await AsyncStore.open(tmp_path / "state", state_dir=True, max_events=100)
    names = {t.name for t in threading.enumerate()}
    assert any(n.startswith("anamnesis-store") for n in names)
    worker = await store._run(lambda: threading.current_thread().name)
    assert worker.startswith("anamnesis-store")

    threads: list[str] = []
    core = store._store
    for name in ("save_snapshot", "set_params", "save_scene", "log_event"):
        method = getattr(core, name)

        def spy(*args, _method=method, **kwargs):
            threads.append(threading.current_thread().name)
            return _method(*args, **kwargs)
        setattr(core, name, spy)
    big = encode_state({"w": np.random.default_rng(0).uniform(size=200_000)})
    await store.save_snapshot("a", "big", "autoregnn", big)
    await store.set_params("a", {"lr": 0.5})
    await store.save_scene("s", {"a": SceneAgent({"lr": 0.5})})
    await store.log_event("k", "hello")
    assert len(threads) == 4 and all(t == worker for t in threads)   # every write off the loop
    state_ = await store.load_all()
    assert state_.params == {"a": {"lr": 0.5}} and state_.scenes == ["s"]
    assert (await store.events())[0].message == "hello"
    assert await store.schema_version() == SCHEMA_VERSION
    await store.close()
    await store.close()                                # idempotent
    assert not any(t.name.startswith("anamnesis-store") for t in threading.enumerate())
    with pytest.raises(StoreError, match="closed"):
        await store.params()
    async with await AsyncStore.open(tmp_path / "state", state_dir=True) as again:
        assert (await again.params()) == {"a": {"lr": 0.5}}


def test_a_first_version_database_gains_the_agents_ports(tmp_path):
    """A gallery's hub database of schema 1 opens under schema 2: its data kept, the
    local agents' ports remembered from then on."""
    path = tmp_path / DB_NAME
    with Store(path, migrations=MIGRATIONS[:1]) as store:
        store.set_params("a1", {"lr": 0.25})
        assert store.schema_version == 1
    with Store(path) as store:
        assert store.schema_version == 2 and store.params() == {"a1": {"lr": 0.25}}
        assert store.agent_ports() == {}
        store.set_agent_ports({"a1": (9001, 9002, 9003), "a2": (9101, 9102, 9103)})
        store.set_agent_ports({"a2": (9201, 9202, 9203)})
    with Store(path) as store:
        assert store.load_all().ports == {"a1": (9001, 9002, 9003), "a2": (9201, 9202, 9203)}
