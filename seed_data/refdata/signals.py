"""Ctrl-C and SIGTERM as exceptions, so that ``finally`` blocks drop scratch databases.

The first signal raises :class:`Interrupted` wherever the program is; later ones are ignored
so that the cleanup it started can finish. Around work that must not be cut in half
(writing a revision and its lock line, dropping a scratch database) the signals are held
back and delivered afterwards.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM; ``exit_status`` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_status = 128 + signum


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, the first Ctrl-C or SIGTERM raises Interrupted."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back until the block is done (then they are delivered)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
