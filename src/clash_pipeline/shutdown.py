"""Stopping on SIGTERM and SIGINT: one path for every phase of every long-running command.

The first signal asks the process to stop. Where it lands decides how:

* inside dbt (:func:`blocking`): a :class:`KeyboardInterrupt` is raised in the
  main thread; dbt answers it by cancelling its open queries and stopping its
  threads, and :func:`clash_pipeline.transform.dbt.run_dbt` turns it into
  :class:`Cancelled`;
* in an async flow body registered with :func:`cancel_scope`: that asyncio task
  is cancelled (the fetches stop at their next ``await``); the flow records its
  runs as ``cancelled`` and ends;
* anywhere else: :class:`Cancelled` is raised in the main thread.

The command line ends with one line and exit status 128 + the signal
(130 for SIGINT, 143 for SIGTERM). A second signal ends the process at once,
after stopping the children registered with :func:`register_child`.

Only the main thread can install signal handlers; elsewhere :func:`install`
does nothing (a flow run in a worker thread is stopped by its process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = [
    "SIGNALS",
    "Cancelled",
    "DbtInterrupt",
    "blocking",
    "cancel_scope",
    "cancelled",
    "check",
    "install",
    "register_child",
    "requested",
    "stop_request",
]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Cancelled(BaseException):  # noqa: N818 - a stop request, like KeyboardInterrupt
    """The process was asked to stop (SIGTERM/SIGINT); not an error of the work itself.

    A :class:`BaseException`, so that no ``except Exception`` (a retry, a failure
    record) swallows it.
    """

    def __init__(self, signum: int, detail: str | None = None) -> None:
        self.signum = int(signum)
        self.detail = detail
        self.signal_name = signal.Signals(self.signum).name
        self.message = f"cancelled by {self.signal_name}" + (f": {detail}" if detail else "")
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.signum, self.detail))


class DbtInterrupt(KeyboardInterrupt):
    """Raised inside dbt: dbt cancels its open queries on a KeyboardInterrupt only."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"cancelled by {signal.Signals(signum).name}")
        self.signum = signum


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.signum: int | None = None
        self.depth = 0  # nested install() scopes
        self.blocking = 0  # nested blocking() sections (dbt)
        self.task: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
        self.children: dict[int, Callable[[], None]] = {}
        self.on_stop: Callable[[], None] | None = None


_state = _State()


def requested() -> int | None:
    """The signal that asked this process to stop, if one did."""
    return _state.signum


def cancelled() -> Cancelled | None:
    """:class:`Cancelled` for the signal received, or ``None``."""
    signum = _state.signum
    return Cancelled(signum) if signum is not None else None


def stop_request(exc: BaseException | None) -> Cancelled | None:
    """:class:`Cancelled` when ``exc`` is how a stop request surfaced, else ``None``.

    That is :class:`Cancelled` itself, or a task cancellation or interrupt
    while a signal asked to stop.
    """
    if isinstance(exc, Cancelled):
        return exc
    if isinstance(exc, DbtInterrupt):
        return Cancelled(exc.signum)
    if isinstance(exc, BaseException) and not isinstance(exc, Exception):
        return cancelled()
    return None


def check() -> None:
    """Raise :class:`Cancelled` if a signal asked to stop (for polling loops)."""
    error = cancelled()
    if error is not None:
        raise error


def register_child(key: int, stop: Callable[[], None]) -> Callable[[], None]:
    """``stop`` is called if a second signal ends the process at once; returns an unregister."""
    _state.children[key] = stop
    return lambda: _state.children.pop(key, None) and None


def _stop_children() -> None:
    for stop in list(_state.children.values()):
        with contextlib.suppress(Exception):
            stop()


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _state.signum is not None:
        # A second signal: no more cleaning up.
        _stop_children()
        sys.stderr.write(f"\nsecond {signal.Signals(signum).name}: stopped at once\n")
        sys.stderr.flush()
        os._exit(128 + _state.signum)
    _state.signum = signum
    if _state.blocking:
        if _state.on_stop is not None:
            with contextlib.suppress(Exception):
                _state.on_stop()
        raise DbtInterrupt(signum)
    target = _state.task
    if target is not None:
        loop, task = target
        if not task.done() and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel, f"cancelled by {signal.Signals(signum).name}")
            return
    raise Cancelled(signum)


@contextlib.contextmanager
def install() -> Iterator[None]:
    """Handle SIGTERM and SIGINT as above for the duration of the block (main thread only).

    The outermost scope starts afresh (no signal received yet); the handlers in
    place before are put back at the end.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state.depth == 0:
        _state.signum = None
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def cancel_scope() -> Iterator[None]:
    """A signal cancels the current asyncio task (the flow body) instead of raising in it."""
    task = asyncio.current_task()
    if task is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = _state.task
    _state.task = (asyncio.get_running_loop(), task)
    try:
        yield
    finally:
        _state.task = saved


@contextlib.contextmanager
def blocking(on_stop: Callable[[], None] | None = None) -> Iterator[None]:
    """A section (dbt) where a signal raises :class:`DbtInterrupt` in the main thread.

    ``on_stop`` runs first (e.g. silence dbt's console: it would report its
    cancelled nodes and a stack trace).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    check()
    saved = _state.on_stop
    _state.blocking += 1
    _state.on_stop = on_stop
    try:
        yield
    finally:
        _state.blocking -= 1
        _state.on_stop = saved
