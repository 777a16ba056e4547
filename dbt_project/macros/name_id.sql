{#
    A stable surrogate id for something known only by name: the export names artists and albums
    (and, in the account-data format, tracks) but gives them no Spotify id. `name:` + md5 of the
    names joined by the ASCII unit separator keeps it deterministic across runs and machines and
    apart from Spotify's ids and from the `local:` ids of local files.

    Args:
        parts: SQL expressions of the names, most significant first (e.g. artist, then album).
#}
{% macro name_id(parts) -%}
    'name:' || md5(concat_ws(chr(31), {% for part in parts %}coalesce({{ part }}, ''){{ ", " if not loop.last }}{% endfor %}))
{%- endmacro %}
