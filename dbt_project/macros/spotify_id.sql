{#
    Local files (`is_local: true`) come back from Spotify without ids, yet their plays must be
    kept and must join to tracks, albums and artists like any other. Where Spotify gives no id,
    this derives a stable one from what does identify the object:
      - track:  its uri, `spotify:local:<artist>:<album>:<title>:<seconds>`, unique per file;
      - album:  the `spotify:local:<artist>:<album>` prefix of the track's uri, so every track of
                one local album lands on the same album (the album object has no uri of its own);
      - artist: its name, the only thing a local artist has.
    md5 keeps the id deterministic across runs and machines; the `local:` prefix keeps it apart
    from Spotify's base-62 ids. Real Spotify ids pass through untouched.

    Every id in the project is built here, so plays, play artists and the marts always agree on
    the id of the same local object.

    Args:
        entity: 'track', 'album' or 'artist'.
        obj: SQL expression of a jsonb object: the track object for 'track' and 'album' (an
            album's local key lives in the track's uri), an artist object for 'artist'.
#}
{% macro spotify_id(entity, obj) -%}
    {%- if entity == 'track' -%}
        coalesce({{ obj }} ->> 'id', 'local:' || md5({{ obj }} ->> 'uri'))
    {%- elif entity == 'album' -%}
        coalesce(
            {{ obj }} -> 'album' ->> 'id',
            'local:' || md5(substring({{ obj }} ->> 'uri' from '^(spotify:local:[^:]*:[^:]*):'))
        )
    {%- elif entity == 'artist' -%}
        coalesce({{ obj }} ->> 'id', 'local:' || md5({{ obj }} ->> 'name'))
    {%- else -%}
        {{ exceptions.raise_compiler_error("spotify_id: unknown entity '" ~ entity ~ "'") }}
    {%- endif -%}
{%- endmacro %}
