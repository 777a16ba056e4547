"""Text PostgreSQL can store: NUL characters and lone surrogates replaced, and counted.

PostgreSQL `text` and `jsonb` cannot hold NUL (U+0000), and a lone UTF-16 surrogate cannot even be encoded
as UTF-8. Spotify's JSON may carry either (a NUL is valid JSON), and one such character anywhere in a play
would fail its whole load package, on every retry, while newer plays scroll out of the 50-play window.
"""

from __future__ import annotations

from typing import Any

# What an unstorable character becomes: U+FFFD, the Unicode replacement character.
REPLACEMENT = "\ufffd"


class StorableStrings:
    """A dlt map step (`resource.add_map(...)`): every string of a row made storable; `repaired` counts them."""

    def __init__(self) -> None:
        self.repaired = 0

    def __call__(self, row: Any) -> Any:
        return self._clean(row)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._clean_text(value)
        if isinstance(value, dict):
            return {self._clean_text(key) if isinstance(key, str) else key: self._clean(v) for key, v in value.items()}
        if isinstance(value, list):
            return [self._clean(item) for item in value]
        return value

    def _clean_text(self, text: str) -> str:
        if text.isascii() and "\x00" not in text:
            return text  # the common case, decided without looking at every character
        cleaned = "".join(REPLACEMENT if char == "\x00" or "\ud800" <= char <= "\udfff" else char for char in text)
        if cleaned != text:
            self.repaired += 1
        return cleaned
