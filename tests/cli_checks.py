"""Assertions shared by the CLI test files."""

from __future__ import annotations


def assert_user_error(result, *fragments: str) -> str:
    """Exit code 1, one ``error:`` line on stderr, no traceback; returns that line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]
