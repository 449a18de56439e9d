"""What counts as a user's error, and its one-line form: the one place the stages and the CLI
read it from.

Every error a user can cause or fix is a :class:`UserError` (bad params: ``ConfigError``; bad
data files: ``DataError``; a wrong or stale checkpoint or feature table: ``CheckpointError``,
``VocabularyError``; image weights that do not fit the backbone: ``WeightMappingError``; and
plain ``UserError`` for a bad CLI argument, an unknown name, a project folder) or an
:class:`OSError` (a missing file, a read-only folder, a full disk). They are printed as one
``error:`` line, without a traceback. So are a failed collective (:class:`DistributedError`)
and a stop request (:class:`TrainingStopped`, a ``stopped:`` line); any other exception, a
plain :class:`ValueError` included, is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """An error the user caused or can fix: bad params, data, files or names (a CLI argument,
    an entity typed wrong, a checkpoint for another dataset). Printed as one ``error:`` line,
    without a traceback.

    A :class:`ValueError`, so ``except ValueError`` keeps catching it; raise a plain
    ``ValueError`` only for a broken invariant inside the library (a bug), which the CLI and
    the stages let through with its traceback.
    """


USER_ERRORS: tuple[type[Exception], ...] = (UserError, OSError)

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
