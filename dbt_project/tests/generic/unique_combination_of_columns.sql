{#
    Fails with one row per combination of `combination_of_columns` that occurs more than once.
    A composite key (for instance (user_id, played_at)) is unique only as a whole, which
    dbt's built-in `unique` cannot express (dbt_utils' test of the same name is not available
    offline).
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

grouped as (

    select
        {{ combination_of_columns | join(',\n        ') }},
        count(*) as n_rows
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}

),

final as (

    select * from grouped
    where n_rows > 1

)

select * from final

{% endtest %}
