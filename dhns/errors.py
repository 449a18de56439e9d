"""What counts as a user's error, and its one-line form: the one place the stages and the CLI
read it from.

Every error a user can cause or fix derives from :class:`ValueError` (bad params:
``ConfigError``; bad data files: ``DataError``; a wrong or stale checkpoint or feature table:
``CheckpointError``, ``VocabularyError``) or is an :class:`OSError` (a missing file, a
read-only folder, a full disk). They are printed as one ``error:`` line, without a traceback.
"""

from __future__ import annotations

USER_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError)

#: Exit status of a stage stopped by SIGTERM or Ctrl-C after saving its resume state.
STOPPED_EXIT = 130


class TrainingStopped(Exception):
    """A stop request (SIGTERM, Ctrl-C) ended training after saving the resume state."""


def error_message(exc: BaseException) -> str:
    """One line for an error a user can act on: an OSError as ``<path>: <reason>``."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


class DistributedError(RuntimeError):
    """A collective of a distributed run failed: another rank died or stopped answering."""
