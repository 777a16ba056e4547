"""Errors a user can act on. The CLI prints them as one line, never as a traceback."""


class PipelineError(Exception):
    """A failure the user can fix; the message says what to do."""


class ConfigError(PipelineError, ValueError):
    """A setting is missing or malformed; the message names the setting and how to fix it."""
