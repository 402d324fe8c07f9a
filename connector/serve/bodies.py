"""A request body as a blocking binary stream, for the worker thread that writes it to the store.

The event loop keeps reading the socket (with aiohttp's flow control: the client is paused when
its unread data passes aiohttp's high-water mark) while a thread pulls one piece at a time from
it, so an upload of any size holds at most a few pieces in memory. The stream counts what it
receives and fails with :class:`BodyTooLarge` past the limit, and with :class:`BodyAborted` when
the request is over on the loop's side (client gone, server stopping) or the client goes quiet.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

from aiohttp import StreamReader

POLL_SECONDS = 0.5  # how often a waiting read looks whether the request was abandoned


class BodyTooLarge(Exception):
    """The body passed the server's upload limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than the limit of {limit} bytes")
        self.limit = limit


class BodyAborted(Exception):
    """The body could not be read to its end (client disconnected, server stopping, idle)."""


class BlockingBody(io.RawIOBase):
    """Read the body of an aiohttp request from a thread other than the event loop's.

    ``limit`` bounds the bytes received; ``idle_seconds`` bounds the wait for the next piece.
    Call :meth:`abandon` from the loop when the request ends early: a read waiting in the thread
    then fails at once instead of waiting on a loop that may be gone.
    """

    def __init__(self, content: StreamReader, loop: asyncio.AbstractEventLoop, *, limit: int,
                 idle_seconds: float = 120.0) -> None:
        super().__init__()
        self._content, self._loop = content, loop
        self._limit, self._idle = limit, idle_seconds
        self._piece = memoryview(b"")
        self._abandoned = threading.Event()
        self.received = 0

    def readable(self) -> bool:
        """Always True."""
        return True

    def abandon(self) -> None:
        """Make every later (and any waiting) read fail with :class:`BodyAborted`."""
        self._abandoned.set()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` with the next bytes of the body; 0 at its end."""
        if not self._piece:
            self._piece = memoryview(self._next_piece())
            if not self._piece:
                return 0
        n = min(len(buffer), len(self._piece))
        buffer[:n] = self._piece[:n]
        self._piece = self._piece[n:]
        return n

    def _next_piece(self) -> bytes:
        """The next piece the socket gave (``b""`` at the end of the body)."""
        if self._abandoned.is_set():
            raise BodyAborted("the request was abandoned")
        future = asyncio.run_coroutine_threadsafe(self._content.readany(), self._loop)
        deadline = time.monotonic() + self._idle
        while True:
            try:
                piece = future.result(timeout=POLL_SECONDS)
                break
            except FutureTimeout:
                if self._abandoned.is_set() or time.monotonic() > deadline:
                    future.cancel()
                    why = "abandoned" if self._abandoned.is_set() else f"idle for {self._idle:g} s"
                    raise BodyAborted(f"the request body stopped arriving ({why})") from None
            except Exception as exc:  # noqa: BLE001 - aiohttp's errors for a dropped or malformed body vary
                raise BodyAborted(f"the request body could not be read: {exc or type(exc).__name__}") from None
        self.received += len(piece)
        if self.received > self._limit:
            raise BodyTooLarge(self._limit)
        return piece
