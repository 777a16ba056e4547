{#
    Keeps one row per `partition_by`: the first in `order_by`. Several marts keep "the latest
    version of each entity"; this states that rule once. `distinct on` is Postgres' own
    shortcut for it (the project targets Postgres only).

    Args:
        relation: a relation or CTE name to read from.
        partition_by: comma-separated key columns.
        order_by: ordering that puts the row to keep first; end it with a unique tie-breaker
            so reruns pick the same row.
#}
{% macro deduplicate(relation, partition_by, order_by) -%}
    select distinct on ({{ partition_by }}) *
    from {{ relation }}
    order by {{ partition_by }}, {{ order_by }}
{%- endmacro %}
