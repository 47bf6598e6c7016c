"""Every model kind resumes exactly: its autosave and a named snapshot, written by one
agent and applied to a fresh one (another seed), give the same state to the bit and
the same future — the next blocks the model plays are identical.

Issue 14 (11): Unlearn's 0-d state arrays (``write_pos``, ``activation_from``) were
written with shape (1,) and every Unlearn autosave was refused on restart. The engines
here are driven block by block on the test's own thread (no clock running, so state
requests run at once): nothing depends on timing. A process-level restart per kind is
in the second test.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from support.agents import spawn

from anamnesis.agents.control import AgentControl
from anamnesis.agents.dsp.engine import AgentEngine
from anamnesis.agents.models import MODEL_KINDS, create_model
from anamnesis.agents.snapshots import AUTOSAVE, SnapshotStore, read_snapshot_sync

SR = 48000
BLOCK = 256
KINDS = sorted(MODEL_KINDS)


def _agent(kind: str, state_dir: Path, seed: int) -> tuple[AgentControl, AgentEngine,
                                                              SnapshotStore]:
    model = create_model(kind, seed=seed, max_block=BLOCK)
    engine = AgentEngine(model, block=BLOCK, sample_rate=SR)
    store = SnapshotStore(state_dir, agent_id="a1", model_kind=kind)
    store.open()
    return AgentControl(engine, agent_id="a1", store=store), engine, store


def _play(engine: AgentEngine, blocks: int, seed: int) -> np.ndarray:
    """``blocks`` blocks of a seeded noisy sine through ``engine``; what the model
    played, before the safety chain (whose filters and start-up fade are the
    process's, not the model's: a resumed agent fades in, as it should)."""
    rng = np.random.default_rng(seed)
    played = np.zeros(blocks * BLOCK)
    speaker = np.zeros(BLOCK)
    t = np.arange(blocks * BLOCK) / SR
    mic = 0.4 * np.sin(2 * np.pi * 220.0 * t) + 0.05 * rng.standard_normal(t.size)
    for b in range(blocks):
        engine.process_block(mic[b * BLOCK:(b + 1) * BLOCK], speaker)
        played[b * BLOCK:(b + 1) * BLOCK] = engine._raw  # the model's own output
    return played


def _a_changed_parameter(control: AgentControl) -> tuple[str, float]:
    """A float parameter of the model set away from its default (the snapshot's params
    must come back too)."""
    for name, spec in control.specs().items():
        if name in ("gain", "mute") or spec.size is not None:
            continue
        default = float(spec.default)  # type: ignore[arg-type]
        value = default * 0.9 if default else 0.5 * (spec.lo + spec.hi)
        try:
            control.set(name, spec.validate(value))
        except ValueError:
            continue
        return name, float(control.values()[name])  # type: ignore[arg-type]
    raise AssertionError("no float parameter to change")


def _assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for key in a:
        assert np.shape(a[key]) == np.shape(b[key]), key
        assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["autosave", "snapshot"])
def test_a_fresh_agent_resumes_to_the_bit_and_plays_the_same_future(tmp_path, kind, how):
    # The test plays the audio blocks itself, on its own loop: a plain asyncio.run, not
    # a watched loop (numba may compile a parameter's specialisation on first use).
    asyncio.run(_resume_case(tmp_path, kind, how))


async def _resume_case(tmp_path: Path, kind: str, how: str) -> None:
    first, engine, store = _agent(kind, tmp_path / "a1", seed=1)
    _play(engine, 120, seed=7)
    name, value = _a_changed_parameter(first)
    first.set("gain", -6.0)
    _play(engine, 4, seed=8)  # the parameter change reaches the model at a block boundary
    if how == "autosave":
        await first.autosave()
    else:
        await first.snapshot("dusk")
    saved = engine.model.get_state()
    store.close()

    second, engine2, store2 = _agent(kind, tmp_path / "a1", seed=99)
    try:
        if how == "autosave":
            snap = store2.load_autosave_sync()
            assert snap is not None
            await second.apply_snapshot(snap, what="autosave")
        else:
            await second.recall("dusk")
        _play(engine2, 0, seed=0)
        _assert_same_state(saved, engine2.model.get_state())
        assert second.values()[name] == pytest.approx(value, rel=1e-12)
        assert engine2.safety.gain_db == -6.0
        # The same input from here on gives the same output, to the bit.
        ahead, ahead2 = _play(engine, 40, seed=3), _play(engine2, 40, seed=3)
        assert np.max(np.abs(ahead)) > 1e-4, "the agent is silent: nothing is compared"
        assert_array_equal(ahead, ahead2)
        _assert_same_state(engine.model.get_state(), engine2.model.get_state())
    finally:
        store2.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_every_kind_resumes_its_autosave_after_a_restart(tmp_path, kind):
    """A real agent process per kind: SIGTERM writes the autosave; the next process
    resumes it (not 'cannot resume … starting fresh') and its first autosave holds the
    parameter it was given before the restart."""
    state = tmp_path / "a1"
    args = ["--id", "a1", "--model", kind, "--audio", "null", "--interface", "127.0.0.1",
            "--state-dir", str(state), "--no-announce"]
    agent = await spawn(*args)
    try:
        await agent.ready()
        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.wait() == 0, agent.log
    finally:
        agent.kill()
    saved = read_snapshot_sync(state / AUTOSAVE)
    again = await spawn(*args)
    try:
        await again.ready()
        assert "resumed the autosave" in again.log, again.log
        assert "cannot resume" not in again.log
        again.proc.send_signal(signal.SIGTERM)
        assert await again.wait() == 0, again.log
    finally:
        again.kill()
    resumed = read_snapshot_sync(state / AUTOSAVE)
    assert resumed.model == saved.model == kind
    assert {k: v.shape for k, v in resumed.state.items()} == \
        {k: v.shape for k, v in saved.state.items()}
