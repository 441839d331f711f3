"""The one bridge between sync and async code: an event loop that runs in a thread of its own.

A notebook cell (Jupyter, papermill) already runs an event loop, so sync code there cannot `asyncio.run`, and it
must not block that loop on work the loop itself has to do. `run_sync` runs a coroutine on a private loop thread
instead; `LoopThread` is that thread, also kept for the life of an engine that binds to one loop (vLLM's AsyncLLM
starts its output handler on the loop it is created on and serves no other).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any


class LoopThread:
    """An event loop running in a daemon thread until `close()`.

    `call(coro)` runs a coroutine there and blocks the calling thread until it is done; `await run(coro)` does the
    same from another event loop without blocking it."""

    def __init__(self, name: str = "deepmath-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine) -> Any:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("LoopThread.call from its own thread would wait on itself")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def run(self, coro: Coroutine) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        """Cancel what still runs on the loop (e.g. an engine's output handler), stop it and join the thread."""
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self.call(cancel_all())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
        if not self.thread.is_alive():
            self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_sync(coro: Coroutine) -> Any:
    """Run a coroutine to completion from sync code and return its result (its exception is raised here).

    Without a running loop: `asyncio.run`. Inside one (a notebook cell): on a fresh loop thread, closed afterwards;
    the caller's loop waits meanwhile, which is what a sync call means there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with LoopThread("deepmath-run-sync") as thread:
        return thread.call(coro)
