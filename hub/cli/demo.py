"""``anamnesis demo``: the octophonic demo, live — what ``make demo`` runs (JOURNEYS 1).

``anamnesis demo [--config NAME_OR_PATH] [--http 127.0.0.1:8470] [--state-dir DIR]
[--no-audio] [--device DEVICE] [--fresh]`` runs the hub (:func:`anamnesis.hub.cli.hub.run_hub`,
unchanged) on an example installation (default ``octophonic.toml`` of
:mod:`anamnesis.hub.resources`; a path works too) in simulated mode, on 127.0.0.1 only:

1. **Kernels first.** Eight agents compiling their numba kernels at once fight
   over the cores for a minute on a laptop; so before the hub starts, one
   warm-up process per half (the agents' models, engine and RTP link; the hub's
   routing graph and room convolver) compiles them into numba's on-disk cache,
   in parallel. With a warm cache this takes about a second. Beside them the
   agents' forkserver (:mod:`anamnesis.hub.fleet.launcher`) imports what every agent needs, so
   the agents fork warm the moment the hub starts them.
2. **The hub** with the config's local agents (``spawn = true``), clocked by the
   hub over RTP on loopback through the simulated room; it prints
   ``Dashboard: http://127.0.0.1:8470/?token=…`` as ``anamnesis hub`` does, then a
   short summary: the agents starting, where the state lives, how to stop, how to
   rehearse offline.
3. **The headphone preview**: the room's stereo listener preview played on the
   default output device (or ``--device``) by :mod:`anamnesis.hub.monitor.headphones`; with no
   PortAudio, no output device or ``--no-audio``, one line says the preview is in
   the browser only (the dashboard's listen stream), and the demo carries on.
4. The terminal says when the first sound reaches the listener (and how long
   after the hub started); Ctrl-C (SIGINT) or SIGTERM stops everything through
   the hub's own shutdown (the player first, then the agents, the state saved).

State (token, database, agents' weights, logs) lives in ``--state-dir``
(default ``$XDG_STATE_HOME/anamnesis/demo``, i.e. ``~/.local/state/anamnesis/demo``);
a second run resumes it, ``--fresh`` starts from an empty one (only a directory
that holds a hub's state, or nothing, is ever emptied).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The example installation the demo runs by default.
DEFAULT_CONFIG = "octophonic.toml"
#: RMS of the listener preview (full scale 1) that counts as "the agents are playing".
FIRST_SOUND_RMS = 1e-4
#: Longest a warm-up process may take (s) before the demo goes on without it.
WARM_UP_TIMEOUT_S = 300.0
#: What a hub state directory holds (``--fresh`` empties only such a directory).
_STATE_MARKERS = ("token", "hub.sqlite3")


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/anamnesis/demo`` (``~/.local/state/anamnesis/demo``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "anamnesis" / "demo"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``anamnesis demo``."""
    parser.add_argument("--config", default=DEFAULT_CONFIG, metavar="NAME_OR_PATH",
                        help=f"installation config: an example's name ({DEFAULT_CONFIG}, "
                             "embodied8.toml, ring3.toml, ring4.toml ...: see deploy/) or a "
                             f"path (default: {DEFAULT_CONFIG})")
    parser.add_argument("--http", default="127.0.0.1:8470", metavar="HOST:PORT",
                        help="address of the dashboard and API (default 127.0.0.1:8470; "
                             "port 0 picks a free one)")
    parser.add_argument("--osc", default="127.0.0.1:8471", metavar="HOST:PORT",
                        help="UDP address of the installation's OSC API (default "
                             "127.0.0.1:8471; 'off' for none)")
    parser.add_argument("--state-dir", type=Path,
                        help="where the demo keeps its state (default "
                             "$XDG_STATE_HOME/anamnesis/demo)")
    parser.add_argument("--no-audio", action="store_true",
                        help="do not play the listener preview here (listen in the browser)")
    parser.add_argument("--device", metavar="DEVICE",
                        help="output device for the preview: index or part of the name "
                             "(default: the default output; see `anamnesis devices`)")
    parser.add_argument("--fresh", action="store_true",
                        help="start from an empty state directory (forget the saved state)")
    from anamnesis.hub.cli.hub import add_launch_argument

    add_launch_argument(parser)
    parser.add_argument("--log-level", default="warning",
                        choices=("debug", "info", "warning", "error"), help="stderr log level")


def resolve_config(text: str) -> Path:
    """The config file for ``--config``: an existing path, else an example of
    :mod:`anamnesis.hub.resources` by name (``.toml`` optional); ``FileNotFoundError`` naming the
    examples otherwise."""
    from anamnesis.hub.resources import deploy_config

    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.name == text:                 # a bare name: one of the examples
        name = text if text.endswith(".toml") else f"{text}.toml"
        return deploy_config(name)
    raise FileNotFoundError(f"no config file {text}")


def clear_state_dir(path: Path) -> None:
    """Empty ``path`` for ``--fresh``: only if it is missing, empty or a hub's state
    directory (``ValueError`` otherwise: never delete what might be someone's files)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise ValueError(f"--state-dir {path} is not a directory")
    if any(path.iterdir()) and not any((path / m).exists() for m in _STATE_MARKERS):
        raise ValueError(f"--fresh would empty {path}, which does not hold a hub's state "
                         "(no token, no hub.sqlite3): choose another --state-dir")
    shutil.rmtree(path)


def _command() -> str:
    """How the user runs ``anamnesis`` from here (the venv's script if not on PATH)."""
    found = shutil.which("anamnesis")
    mine = Path(sys.executable).with_name("anamnesis")
    if found and Path(found).resolve() == mine.resolve():
        return "anamnesis"
    if mine.exists():
        try:
            return str(mine.relative_to(Path.cwd()))
        except ValueError:
            return str(mine)
    return f"{sys.executable} -m hub.cli"


# ---------------------------------------------------------------------------
# Warming numba's cache before eight agents start
# ---------------------------------------------------------------------------


def warm_agents(config_path: Path) -> None:
    """Compile the audio-path kernels of every model and preset the config's local agents
    use (a preset may add input-following kernels), exactly as an agent process does
    (:func:`anamnesis.agents.recipe.warm_up`, same arguments), so the agents load them from
    numba's cache."""
    from anamnesis.agents.main import add_agent_arguments, check_args
    from anamnesis.agents.recipe import config_model, config_warm_up
    from anamnesis.hub.fleet.supervisor import agent_argv
    from anamnesis.hub.installation.check import load_config

    config = load_config(config_path)
    parser = argparse.ArgumentParser()
    add_agent_arguments(parser)
    done: set[tuple[str, str | None]] = set()
    for spec in config.agents:
        if not spec.spawn or (spec.model, spec.preset) in done:
            continue
        done.add((spec.model, spec.preset))
        argv = agent_argv(spec.id, model=spec.model, preset=spec.preset, audio="hub",
                          model_args=spec.model_args(),
                          extra=["--block", str(config.installation.block),
                                 "--sample-rate", str(config.installation.sample_rate)])
        agent = check_args(parser.parse_args(list(argv[3:])))
        make_model, follow = config_model(agent)
        config_warm_up(make_model, follow, agent)


def warm_hub(config_path: Path) -> None:
    """Compile the hub's own kernels for the config (the routing graph, the room's
    convolver, the headphone player's ring) and compute the room's responses into
    their disk cache (:func:`anamnesis.hub.engine.coupling.default_cache_dir`)."""
    from anamnesis.hub.engine.graph import from_config
    from anamnesis.hub.installation.check import load_config
    from anamnesis.hub.monitor.headphones import StereoRing

    config = load_config(config_path)
    graph = from_config(config)
    graph.tick(np.zeros((graph.max_block, graph.n_agents)))
    StereoRing(4, prime=1, high=2).warm_up()
    if config.room is not None:   # the responses land in their disk cache too
        from anamnesis.hub.engine.coupling import RoomCoupling, default_cache_dir

        block, n = config.installation.block, len(config.agents)
        coupling = RoomCoupling(config.room, config.agents, block=block,
                                sample_rate=config.installation.sample_rate,
                                cache_dir=default_cache_dir())
        coupling.process(np.zeros((block, n)), np.zeros((block, n)), np.zeros((block, 2)))


def warm_kernels(config_path: Path) -> tuple[float, list[str]]:
    """Run :func:`warm_agents` and :func:`warm_hub` in two processes at once (one core
    each); the seconds taken and a line for each part that failed (the demo goes on:
    the agents then compile for themselves)."""
    t0 = time.monotonic()
    procs = {part: subprocess.Popen(
        [sys.executable, "-m", "anamnesis.hub.cli.demo", "--warm", part, str(config_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        for part in ("agents", "hub")}
    problems = []
    try:
        for part, proc in procs.items():
            try:
                _, err = proc.communicate(timeout=max(1.0, WARM_UP_TIMEOUT_S
                                                      - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                problems.append(f"warming the {part} kernels took over "
                                f"{WARM_UP_TIMEOUT_S:.0f} s; skipped")
                continue
            if proc.returncode != 0:
                last = (err.decode(errors="replace").strip().splitlines() or ["?"])[-1]
                problems.append(f"warming the {part} kernels failed: {last}")
    finally:   # Ctrl-C while warming: leave no process behind
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return time.monotonic() - t0, problems


# ---------------------------------------------------------------------------
# The demo
# ---------------------------------------------------------------------------


class _FirstSound:
    """A listener-preview subscriber that reports the first block above
    :data:`FIRST_SOUND_RMS`, then unsubscribes itself."""

    def __init__(self, hub_started: float) -> None:
        self.hub_started = hub_started
        self.unsubscribe: Any = None
        self.after_s: float | None = None

    def __call__(self, block: np.ndarray) -> None:
        rms = float(np.sqrt(np.mean(np.square(block))))
        if np.isfinite(rms) and rms > FIRST_SOUND_RMS:
            self.after_s = time.monotonic() - self.hub_started
            print(f"  Sound: the listener hears the agents, {self.after_s:.1f} s after the "
                  "hub started.", flush=True)
            if self.unsubscribe is not None:
                self.unsubscribe()


def run_demo(args: argparse.Namespace) -> int:
    """Run ``anamnesis demo`` until SIGINT/SIGTERM; the exit status."""
    os.umask(0o077)   # before the agents' forkserver starts: every file the owner's alone
    from anamnesis.hub.cli.hub import first_busy, oscquery_address, parse_address, run_hub
    from anamnesis.hub.installation.check import load_config

    try:
        host, port = parse_address(args.http)
        osc = None if args.osc == "off" else parse_address(args.osc, "--osc")
        busy = first_busy((host, port), osc, oscquery_address(args, host, port))
        if busy is not None:       # said before a minute of compiling, not after
            print(f"anamnesis demo: {busy}", file=sys.stderr)
            return 1
        config_path = resolve_config(args.config)
        config = load_config(config_path)
        state_dir = (args.state_dir or default_state_dir()).expanduser()
        if args.fresh:
            clear_state_dir(state_dir)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"anamnesis demo: {exc}", file=sys.stderr)
        return 2
    local = [a.id for a in config.agents if a.spawn]
    room = "through the simulated room" if config.room is not None else "without a room"
    print(f"anamnesis demo: {config.installation.name} — {len(local)} learning agents "
          f"{room} ({config_path})", flush=True)
    if config.installation.description:
        import textwrap

        print(textwrap.fill(config.installation.description, 88, initial_indent="  The piece: ",
                            subsequent_indent="    "), flush=True)
    print("  Preparing: compiling the agents' and the hub's kernels (once; the first run "
          "takes a minute)…", flush=True)
    try:
        if args.agent_launch == "fork" and local:   # it warms up beside the kernels
            from anamnesis.hub.fleet.launcher import start_forkserver

            start_forkserver()
        seconds, problems = warm_kernels(config_path)
    except KeyboardInterrupt:
        print("anamnesis demo: interrupted", file=sys.stderr)
        return 130
    for problem in problems:
        print(f"  {problem}", flush=True)
    print(f"  Kernels ready in {seconds:.1f} s.", flush=True)

    hub_started = time.monotonic()
    command = _command()

    async def started(hub: Any) -> Any:
        import asyncio

        stops = []
        n = len(local)
        print(f"  Agents: starting {n} ({', '.join(local)}) under the hub's clock; the "
              "dashboard shows each as it comes online.", flush=True)
        listen = getattr(hub, "listen", None)
        can_listen = listen is not None and "listener" in getattr(listen, "sources", ())
        if can_listen:
            first = _FirstSound(hub_started)
            first.unsubscribe = listen.subscribe("listener", first)
            stops.append(first.unsubscribe)
        if args.no_audio:
            print("  Headphones: off (--no-audio); hear the listener preview in the "
                  "dashboard: press Listen.", flush=True)
        elif not can_listen:
            print("  Headphones: this installation has no listener preview (no room).",
                  flush=True)
        else:
            from anamnesis.agents.audio.backends import parse_device
            from anamnesis.hub.monitor.headphones import open_player

            loop = asyncio.get_running_loop()
            player, what = await loop.run_in_executor(
                None, open_player, listen.sample_rate, parse_device(args.device))
            if player is None:
                print(f"  Headphones: {what} — the listener preview is in the browser only: "
                      "press Listen in the dashboard.", flush=True)
            else:
                # PortAudio's callback needs the GIL, which the hub's loop holds in 5 ms
                # slices by default: a device buffer of a few ms would underflow.
                sys.setswitchinterval(0.001)
                unsubscribe = listen.subscribe("listener", player.feed, on_panic=player.panic)
                print(f"  Headphones: the listener preview plays on {what}.", flush=True)

                def stop_player() -> None:
                    unsubscribe()
                    player.stop()
                    stats = player.stats()
                    if stats["underruns"] or stats["xruns"]:
                        print(f"  Headphones: {stats['underruns']} underrun(s) (the latency "
                              f"grew to {player.latency_ms():.0f} ms), {stats['xruns']} "
                              "device xrun(s).", flush=True)
                stops.append(stop_player)
        print(f"  State: {state_dir} (token, database, agents' weights, logs); the next run "
              "resumes it, --fresh starts over.", flush=True)
        print("  Stop: Ctrl-C — the agents stop and everything is saved.", flush=True)
        print(f"  Rehearse offline: {command} rehearse {config_path} --seconds 60 "
              "--out piece.wav --preview headphones.wav", flush=True)

        def stop_all() -> None:
            print("  Stopping: the agents stop, the state is saved…", flush=True)
            for stop in reversed(stops):
                stop()
        return stop_all

    hub_args = argparse.Namespace(
        config=config_path, http=args.http, state_dir=state_dir, interface="127.0.0.1",
        key_file=None, mode="simulated", osc=args.osc, no_spawn=False,
        agent_launch=args.agent_launch, log_level=args.log_level)
    code = run_hub(hub_args, on_started=started)
    if code == 0:
        print(f"anamnesis demo: stopped; the state is in {state_dir}.", flush=True)
    return code


def _main(argv: list[str]) -> int:
    """``python -m anamnesis.hub.cli.demo --warm agents|hub|all CONFIG``: one half of
    :func:`warm_kernels` (``anamnesis demo`` runs them), or both at once (``make venv``
    does, so that the first demo finds numba's cache made)."""
    if len(argv) != 3 or argv[0] != "--warm" or argv[1] not in ("agents", "hub", "all"):
        print("usage: python -m anamnesis.hub.cli.demo --warm agents|hub|all CONFIG",
              file=sys.stderr)
        return 2
    if argv[1] == "all":
        seconds, problems = warm_kernels(Path(argv[2]))
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"kernels of {argv[2]} compiled in {seconds:.1f} s")
        return 1 if problems else 0
    (warm_agents if argv[1] == "agents" else warm_hub)(Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


__all__ = ["add_demo_arguments", "clear_state_dir", "default_state_dir", "resolve_config",
           "run_demo", "warm_kernels"]
