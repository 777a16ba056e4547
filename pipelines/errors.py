"""Errors a user can act on. The CLI prints them as one line, never as a traceback."""


class PipelineError(Exception):
    """A failure the user can fix; the message says what to do."""


class ConfigError(PipelineError, ValueError):
    """A setting is missing or malformed; the message names the setting and how to fix it."""


class DatabaseUnavailable(ConfigError):
    """The pipeline's database cannot be reached, or the connection was lost: every account's load would fail
    alike, so a run stops on it rather than report it per account."""


def first_line(exc: BaseException) -> str:
    """An error as one short line: its message's first line (at most 300 characters), else its type."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
