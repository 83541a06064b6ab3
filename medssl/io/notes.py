"""Log lines of a read are held until the read has succeeded: a read that fails says one
thing, its error, and never a trail of INFO/WARNING lines before it (which the CLI would
print above its one-line error). Third-party loggers that quote header values or report
their own silent fixes (nibabel) are routed to DEBUG."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_HELD: ContextVar[list[tuple[logging.Logger, int, str, tuple]] | None] = ContextVar("medssl_io_notes", default=None)


def note(logger: logging.Logger, level: int, msg: str, *args: object) -> None:
    """``logger.log(level, msg, *args)`` now, or when the enclosing ``held_notes`` succeeds."""
    held = _HELD.get()
    if held is None:
        logger.log(level, msg, *args)
    else:
        held.append((logger, level, msg, args))


@contextmanager
def held_notes() -> Iterator[None]:
    """Hold ``note`` lines; emit them on success, drop them (kept at DEBUG) on an error."""
    if _HELD.get() is not None:  # nested: the outermost read decides
        yield
        return
    held: list[tuple[logging.Logger, int, str, tuple]] = []
    token = _HELD.set(held)
    try:
        yield
    except BaseException:
        _HELD.reset(token)
        for logger, _, msg, args in held:
            logger.debug("(before the error) " + msg, *args)
        raise
    _HELD.reset(token)
    for logger, level, msg, args in held:
        logger.log(level, msg, *args)


class _ToDebug(logging.Handler):
    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.debug("%s logged a %s (text hidden: it may quote header values)", record.name,
                          record.levelname.lower())  # fmt: skip


def quiet_library_loggers() -> None:
    """nibabel logs what it silently fixes in a header ("setting to 0") at ERROR level, often
    several lines per file, and warns about odd extensions; medssl's own checks say what
    matters, as one typed error."""
    warnings.filterwarnings("ignore", module=r"nibabel(\.|$)")
    target = logging.getLogger("medssl.io")
    for name in ("nibabel", "nibabel.global"):
        lib = logging.getLogger(name)
        lib.propagate = False
        lib.handlers = [h for h in lib.handlers if not isinstance(h, logging.StreamHandler)
                        or isinstance(h, _ToDebug)]  # fmt: skip
        if not any(isinstance(h, _ToDebug) for h in lib.handlers):
            lib.addHandler(_ToDebug(target))
