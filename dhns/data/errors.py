"""The one exception the data layer raises for bad input files."""

from __future__ import annotations

from pathlib import Path

from dhns.errors import UserError


class DataError(UserError):
    """A dataset file that cannot be used, located by file and (1-based) line.

    ``str(err)`` is ``"{path}:{line}: {message}"`` (or ``"{path}: {message}"`` when the
    problem is not on one line), so the CLI can print it as a one-line error.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"

    def __reduce__(self):  # keep the attributes when pickled (e.g. across worker processes)
        return (type(self), (self.path, self.message, self.line))
