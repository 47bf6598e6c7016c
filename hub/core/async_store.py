"""The hub's store for the event loop: :class:`AsyncStore` opens the synchronous
:class:`~anamnesis.hub.core.store.Store` in one named worker thread
(``anamnesis-store``) and runs every call there, so no write ever blocks the loop;
``close()`` closes the database and joins the thread."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from anamnesis.hub.core.store import (
    THREAD_NAME,
    Event,
    Scene,
    SceneAgent,
    SnapshotInfo,
    Store,
    StoredState,
    StoreError,
    T,
)

# ---------------------------------------------------------------------------
# The asyncio wrapper
# ---------------------------------------------------------------------------


class AsyncStore:
    """:class:`Store` for the event loop: every call runs in one named worker thread.

    ``store = await AsyncStore.open(path, **kwargs)``; ``await store.close()``
    closes the database and joins the thread. Methods mirror :class:`Store`'s.
    """

    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        self._store = store
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, state_dir: bool = False,
                   **kwargs: Any) -> AsyncStore:
        """Open the database at ``path`` (a state directory when ``state_dir``) in the worker."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        loop = asyncio.get_running_loop()
        opener = Store.in_state_dir if state_dir else Store
        try:
            store = await loop.run_in_executor(executor, lambda: opener(path, **kwargs))
        except BaseException:
            executor.shutdown(wait=True)
            raise
        return cls(store, executor)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._store.path

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise StoreError(f"the hub database {self._store.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def close(self) -> None:
        """Close the database in the worker, then shut the worker down (idempotent)."""
        if self._closed:
            return
        try:
            await self._run(self._store.close)
        finally:
            self._closed = True
            # The worker is idle now (close was its last task): joining it takes
            # microseconds, so it is done here rather than in yet another thread.
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        return await self._run(lambda: self._store.schema_version)

    async def set_config(self, toml_text: str) -> None:
        await self._run(self._store.set_config, toml_text)

    async def config(self) -> str | None:
        return await self._run(self._store.config)

    async def replace_routes(self, routes: Mapping[str, Mapping[str, Any]]) -> None:
        await self._run(self._store.replace_routes, routes)

    async def put_route(self, route_id: str, spec: Mapping[str, Any]) -> None:
        await self._run(self._store.put_route, route_id, spec)

    async def delete_route(self, route_id: str) -> bool:
        return await self._run(self._store.delete_route, route_id)

    async def routes(self) -> dict[str, dict[str, Any]]:
        return await self._run(self._store.routes)

    async def set_params(self, agent_id: str, params: Mapping[str, Any]) -> None:
        await self._run(self._store.set_params, agent_id, params)

    async def delete_params(self, agent_id: str) -> int:
        return await self._run(self._store.delete_params, agent_id)

    async def params(self, agent_id: str | None = None) -> dict[str, dict[str, Any]]:
        return await self._run(self._store.params, agent_id)

    async def set_agent_ports(self, ports: Mapping[str, tuple[int, int, int]]) -> None:
        await self._run(self._store.set_agent_ports, ports)

    async def agent_ports(self) -> dict[str, tuple[int, int, int]]:
        return await self._run(self._store.agent_ports)

    async def save_snapshot(self, agent_id: str, name: str, model: str, data: bytes) -> int:
        return await self._run(self._store.save_snapshot, agent_id, name, model, data)

    async def snapshot(self, snapshot_id: int) -> tuple[SnapshotInfo, bytes]:
        return await self._run(self._store.snapshot, snapshot_id)

    async def find_snapshot(self, agent_id: str, name: str) -> SnapshotInfo | None:
        return await self._run(self._store.find_snapshot, agent_id, name)

    async def snapshots(self, agent_id: str | None = None) -> list[SnapshotInfo]:
        return await self._run(self._store.snapshots, agent_id)

    async def delete_snapshot(self, snapshot_id: int) -> bool:
        return await self._run(self._store.delete_snapshot, snapshot_id)

    async def save_scene(self, name: str, agents: Mapping[str, SceneAgent],
                         meta: Mapping[str, Any] | None = None) -> Scene:
        return await self._run(self._store.save_scene, name, agents, meta)

    async def scene(self, name: str) -> Scene:
        return await self._run(self._store.scene, name)

    async def scenes(self) -> list[str]:
        return await self._run(self._store.scenes)

    async def delete_scene(self, name: str) -> bool:
        return await self._run(self._store.delete_scene, name)

    async def log_event(self, kind: str, message: str, *, agent_id: str | None = None,
                        data: Any = None, ts: float | None = None) -> int:
        return await self._run(self._store.log_event, kind, message, agent_id=agent_id,
                               data=data, ts=ts)

    async def events(self, limit: int = 100, *, after_id: int | None = None,
                     kind: str | None = None, agent_id: str | None = None) -> list[Event]:
        return await self._run(self._store.events, limit, after_id=after_id, kind=kind,
                               agent_id=agent_id)

    async def load_all(self) -> StoredState:
        return await self._run(self._store.load_all)


__all__ = ["AsyncStore"]
