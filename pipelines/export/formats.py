"""The two streaming-history formats of Spotify's privacy export, and how each lands in `raw`.

- **Extended streaming history** (`Streaming_History_Audio_*.json`, `Streaming_History_Video_*.json`, and the
  older `endsong_*.json`): one object per play, with `ts` (UTC, second precision, when the play *ended*),
  `ms_played`, track / episode / audiobook metadata and URIs, and playback fields.
- **Account data** (`StreamingHistory_music_*.json`, `StreamingHistory_podcast_*.json`,
  `StreamingHistory_audiobook_*.json`, older `StreamingHistory<N>.json`): the last year only, `endTime` at
  minute precision (UTC, when the play ended), names but no URIs.

Each file also has a kind (`FileKind`), logged in `raw.export_files`: which of Spotify's files it is, so that
dbt can tell video plays apart and compute coverage per content type.

Every field is declared once here: its JSON name, its column in `raw`, its Arrow and PostgreSQL types. The
reader, the import's COPY and the table DDL are all generated from these declarations.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass
from typing import Literal

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

FormatName = Literal["extended", "account"]
FileKind = Literal["extended_audio", "extended_video", "account_music", "account_podcast", "account_audiobook"]


@dataclass(frozen=True)
class Field:
    """One JSON field of a play and the raw column it becomes."""

    json_name: str
    column: str
    arrow_type: pa.DataType
    pg_type: str
    network: bool = False  # IP addresses and user agents: loaded only when the user opts in
    fallback_json_name: str | None = None  # an older name of the same field


TEXT, BIGINT, BOOL = pa.string(), pa.int64(), pa.bool_()


@dataclass(frozen=True)
class ExportFormat:
    """A streaming-history format: its fields and raw table (its files: `kind_of`)."""

    name: FormatName
    time_field: str  # the JSON field holding when the play ended
    time_column: str
    time_format: str  # strptime format of `time_field`, always UTC (sorts like the time it holds)
    fields: tuple[Field, ...]
    struct: type[msgspec.Struct]
    table: str  # the deduplicated raw table dbt reads

    def columns(self, include_network_data: bool) -> list[Field]:
        """The fields an import loads."""
        return [field for field in self.fields if include_network_data or not field.network]

    def decoding_struct(self, include_network_data: bool) -> type[msgspec.Struct]:
        """What msgspec decodes a play into. Without network data, the struct lacks those fields, so their
        values (an IP address in every play of the extended history) are skipped, never built."""
        return self.struct if include_network_data else _without_network(self)

    def matches(self, file_name: str) -> bool:
        """Whether a file (base name) is of this format, by Spotify's naming."""
        kind = kind_of(file_name)
        return kind is not None and format_of_kind(kind) is self


class ExtendedPlay(msgspec.Struct, gc=False):
    """One object of an extended streaming history file; unknown keys are ignored."""

    ts: str
    ms_played: int
    username: str | None = None
    platform: str | None = None
    conn_country: str | None = None
    ip_addr_decrypted: str | None = None
    ip_addr: str | None = None
    user_agent_decrypted: str | None = None
    master_metadata_track_name: str | None = None
    master_metadata_album_artist_name: str | None = None
    master_metadata_album_album_name: str | None = None
    spotify_track_uri: str | None = None
    episode_name: str | None = None
    episode_show_name: str | None = None
    spotify_episode_uri: str | None = None
    audiobook_title: str | None = None
    audiobook_uri: str | None = None
    audiobook_chapter_uri: str | None = None
    audiobook_chapter_title: str | None = None
    reason_start: str | None = None
    reason_end: str | None = None
    shuffle: bool | None = None
    skipped: bool | None = None
    offline: bool | None = None
    offline_timestamp: int | None = None
    incognito_mode: bool | None = None


class AccountPlay(msgspec.Struct, gc=False):
    """One object of an account-data streaming history file (music, podcast or audiobook)."""

    endTime: str  # noqa: N815 - Spotify's key
    msPlayed: int  # noqa: N815
    artistName: str | None = None  # noqa: N815
    trackName: str | None = None  # noqa: N815
    podcastName: str | None = None  # noqa: N815
    episodeName: str | None = None  # noqa: N815
    audiobookName: str | None = None  # noqa: N815
    chapterName: str | None = None  # noqa: N815
    authorName: str | None = None  # noqa: N815


@functools.cache
def _without_network(export_format: ExportFormat) -> type[msgspec.Struct]:
    network = {name for f in export_format.fields if f.network for name in (f.json_name, f.fallback_json_name)}
    kept = [
        (f.name, f.type) if f.required else (f.name, f.type, f.default)
        for f in msgspec.structs.fields(export_format.struct)
        if f.encode_name not in network
    ]
    return msgspec.defstruct(f"{export_format.struct.__name__}WithoutNetwork", kept, gc=False)


EXTENDED = ExportFormat(
    name="extended",
    time_field="ts",
    time_column="ts",
    time_format="%Y-%m-%dT%H:%M:%SZ",
    fields=(
        Field("ms_played", "ms_played", BIGINT, "bigint"),
        Field("username", "username", TEXT, "text"),
        Field("platform", "platform", TEXT, "text"),
        Field("conn_country", "conn_country", TEXT, "text"),
        # Older files say `ip_addr_decrypted`, newer `ip_addr`: one column.
        Field("ip_addr", "ip_addr", TEXT, "text", network=True, fallback_json_name="ip_addr_decrypted"),
        Field("user_agent_decrypted", "user_agent", TEXT, "text", network=True),
        Field("master_metadata_track_name", "master_metadata_track_name", TEXT, "text"),
        Field("master_metadata_album_artist_name", "master_metadata_album_artist_name", TEXT, "text"),
        Field("master_metadata_album_album_name", "master_metadata_album_album_name", TEXT, "text"),
        Field("spotify_track_uri", "spotify_track_uri", TEXT, "text"),
        Field("episode_name", "episode_name", TEXT, "text"),
        Field("episode_show_name", "episode_show_name", TEXT, "text"),
        Field("spotify_episode_uri", "spotify_episode_uri", TEXT, "text"),
        Field("audiobook_title", "audiobook_title", TEXT, "text"),
        Field("audiobook_uri", "audiobook_uri", TEXT, "text"),
        Field("audiobook_chapter_uri", "audiobook_chapter_uri", TEXT, "text"),
        Field("audiobook_chapter_title", "audiobook_chapter_title", TEXT, "text"),
        Field("reason_start", "reason_start", TEXT, "text"),
        Field("reason_end", "reason_end", TEXT, "text"),
        Field("shuffle", "shuffle", BOOL, "boolean"),
        Field("skipped", "skipped", BOOL, "boolean"),
        Field("offline", "offline", BOOL, "boolean"),
        Field("offline_timestamp", "offline_timestamp", BIGINT, "bigint"),
        Field("incognito_mode", "incognito_mode", BOOL, "boolean"),
    ),
    struct=ExtendedPlay,
    table="export_extended_plays",
)

ACCOUNT = ExportFormat(
    name="account",
    time_field="endTime",
    time_column="end_time",
    time_format="%Y-%m-%d %H:%M",
    fields=(
        Field("msPlayed", "ms_played", BIGINT, "bigint"),
        Field("artistName", "artist_name", TEXT, "text"),
        Field("trackName", "track_name", TEXT, "text"),
        Field("podcastName", "podcast_name", TEXT, "text"),
        Field("episodeName", "episode_name", TEXT, "text"),
        Field("audiobookName", "audiobook_name", TEXT, "text"),
        Field("chapterName", "chapter_name", TEXT, "text"),
        Field("authorName", "author_name", TEXT, "text"),
    ),
    struct=AccountPlay,
    table="export_account_plays",
)

FORMATS: tuple[ExportFormat, ...] = (EXTENDED, ACCOUNT)

# Columns every raw export table has besides the format's own fields. A play names its file by number within
# its import (`raw.export_files` holds the names): a file's path, once per play, would be most of what COPY
# parses and PostgreSQL stores.
USER_COLUMN = "user_id"
FILE_NUMBER_COLUMN = "file_number"
OCCURRENCE_COLUMN = "occurrence"  # see `occurrence_order`

# Spotify's file names, by kind. Legacy account exports name their music files `StreamingHistory<N>.json`.
_KIND_PATTERNS: tuple[tuple[str, FileKind], ...] = (
    ("streaming_history_audio_*.json", "extended_audio"),
    ("endsong*.json", "extended_audio"),
    ("streaming_history_video_*.json", "extended_video"),
    ("streaminghistory_music_*.json", "account_music"),
    ("streaminghistory_podcast_*.json", "account_podcast"),
    ("streaminghistory_audiobook_*.json", "account_audiobook"),
    ("streaminghistory[0-9]*.json", "account_music"),
)


def kind_of(file_name: str) -> FileKind | None:
    """The kind of file a base name says it is, by Spotify's naming; None for other names."""
    lowered = file_name.lower()
    return next((kind for pattern, kind in _KIND_PATTERNS if fnmatch.fnmatchcase(lowered, pattern)), None)


def format_of_kind(kind: FileKind) -> ExportFormat:
    """The format a kind of file is written in."""
    return EXTENDED if kind.startswith("extended") else ACCOUNT


_LIST_OF_OBJECTS = re.compile(rb"\s*\[\s*\{")


def sniff_kind(head: bytes) -> FileKind | None:
    """The kind of a JSON file by its first bytes (UTF-8), for files the user renamed: a list whose first
    object has the keys of a play. The export's other JSON files (user data, playlists, inferences, ...) are
    objects, or lists of other objects, and never match."""
    if _LIST_OF_OBJECTS.match(head) is None:
        return None
    if b'"ts"' in head and b'"ms_played"' in head:
        # A renamed video file cannot be told from an audio one by its keys; audio is by far the common case.
        return "extended_audio"
    if b'"endTime"' in head and b'"msPlayed"' in head:
        if b'"audiobookName"' in head:
            return "account_audiobook"
        if b'"podcastName"' in head:
            return "account_podcast"
        return "account_music"
    return None


def arrow_schema(export_format: ExportFormat, include_network_data: bool) -> pa.Schema:
    """The Arrow schema of the batches the reader yields for `export_format`."""
    return pa.schema(
        [
            pa.field(USER_COLUMN, TEXT, nullable=False),
            # Validated UTC text (e.g. 2013-06-28T17:01:20Z): PostgreSQL parses it into timestamptz at COPY.
            pa.field(export_format.time_column, TEXT, nullable=False),
            *(pa.field(f.column, f.arrow_type) for f in export_format.columns(include_network_data)),
            pa.field(ITEM_KEY_COLUMN, TEXT, nullable=False),
        ]
    )


def item_key(export_format: ExportFormat, columns: dict[str, pa.Array]) -> pa.Array:
    """What was played, as one text per row, computed with Arrow's vectorised kernels.

    With user, end time, ms played and occurrence it identifies a play (the raw tables' primary key, see
    `primary_key`), so the same play read from two exports, or twice from one file, is stored once. It is the
    track / episode / chapter URI when there is one; names count only without a URI (account data never has
    URIs), because Spotify's names can change between two exports while URIs do not.
    """
    if export_format is ACCOUNT:
        return _account_key(columns)
    uri = pc.coalesce(columns["spotify_track_uri"], columns["spotify_episode_uri"], columns["audiobook_chapter_uri"])
    if not uri.null_count:
        return uri
    # Names only where there is no URI (few rows): joining names is the dearest part of the key.
    without_uri = pc.is_null(uri)
    names = {name: pc.filter(columns[name], without_uri) for name in _NAME_COLUMNS[export_format.name]}
    named = _name_key(names, _NAME_COLUMNS[export_format.name])
    return pc.replace_with_mask(uri, without_uri, named)


def _account_key(columns: dict[str, pa.Array]) -> pa.Array:
    """Account data's names; the audiobook names follow only in rows that have one, so that the keys of the
    music and podcast plays stored before audiobook files were read stay what they were."""
    key = _name_key(columns, _NAME_COLUMNS["account"])
    audiobook = [columns[name] for name in _ACCOUNT_AUDIOBOOK_COLUMNS]
    if all(column.null_count == len(column) for column in audiobook):
        return key
    has_audiobook = functools.reduce(pc.or_, [pc.is_valid(column) for column in audiobook])
    tail = pc.binary_join_element_wise(*(pc.fill_null(column, "") for column in audiobook), ITEM_KEY_SEPARATOR)
    return pc.if_else(has_audiobook, pc.binary_join_element_wise(key, tail, ITEM_KEY_SEPARATOR), key)


def _name_key(columns: dict[str, pa.Array], names: tuple[str, ...]) -> pa.Array:
    values = [pc.fill_null(columns[name], "") for name in names]
    return pc.binary_join_element_wise(pa.scalar(NAME_KEY_PREFIX), *values, ITEM_KEY_SEPARATOR)


ITEM_KEY_COLUMN = "item_key"
NAME_KEY_PREFIX = "name:"
ITEM_KEY_SEPARATOR = "\x1f"  # the ASCII unit separator: never part of a name
_NAME_COLUMNS = {
    "extended": (
        "master_metadata_track_name",
        "master_metadata_album_artist_name",
        "episode_name",
        "episode_show_name",
        "audiobook_chapter_title",
    ),
    "account": ("artist_name", "track_name", "podcast_name", "episode_name"),
}
_ACCOUNT_AUDIOBOOK_COLUMNS = ("audiobook_name", "chapter_name", "author_name")


def primary_key(export_format: ExportFormat) -> tuple[str, ...]:
    """The raw tables' primary key: who, when the play ended, how long, what, and which of the file's rows
    that agree on all of these (see `occurrence_order`)."""
    return (USER_COLUMN, export_format.time_column, "ms_played", ITEM_KEY_COLUMN, OCCURRENCE_COLUMN)


# The fields that most often tell apart plays with the same key (an offline batch synced at once).
_OCCURRENCE_FIRST = ("offline_timestamp", "reason_start", "reason_end", "platform")


def occurrence_order(export_format: ExportFormat) -> tuple[Field, ...]:
    """The fields that number a file's rows sharing (user, time, ms played, item): `occurrence` is a row's
    0-based rank among them in this order, nulls first.

    Real exports hold different plays with the same end time, rows identical in every field, and account
    data's minute-precise times collide. Numbering by content rather than by position gives the same numbers
    when the same rows are read again (a reimport, a later export), so those add nothing, while two rows of one
    file are never merged. Network fields are left out: whether they are loaded is the user's choice, and it
    must not renumber the plays.
    """
    key = set(primary_key(export_format))
    fields = [f for f in export_format.fields if not f.network and f.column not in key]
    first = [f for name in _OCCURRENCE_FIRST for f in fields if f.column == name]
    return (*first, *(f for f in fields if f not in first))
