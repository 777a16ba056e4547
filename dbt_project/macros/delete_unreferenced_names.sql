{#
    A dimension's post-hook: deletes the rows known by name only (`name:` ids, macros/name_id.sql)
    that no play references any more (for track_artists: whose track is gone).

    The export names tracks, artists and albums without ids. When account data is imported first
    and the extended history later (the usual order: Spotify sends them days apart), or when an
    export play is absorbed by the API play it matches, `plays` switches to the richer ids and the
    name-only rows are left behind. Spotify ids never lose their plays (a play keeps its id
    whichever source holds it), so only `name:` rows are checked, each by an index probe.

    Args:
        id_column: the dimension's key.
        referencing_column: the column of `referencing_model` that references it.
        referencing_model: `plays`, or `tracks` for track_artists.
#}
{% macro delete_unreferenced_names(id_column, referencing_column, referencing_model='plays') -%}
    delete from {{ this }} as dimension
    where
        dimension.{{ id_column }} like 'name:%'
        and not exists (
            select from {{ ref(referencing_model) }} as referencing
            where referencing.{{ referencing_column }} = dimension.{{ id_column }}
        )
{%- endmacro %}
