with

source as (

    select * from {{ optional_source('spotify', 'gaps', [
        ['user_id', 'text'], ['gap_from', 'timestamptz'], ['gap_to', 'timestamptz'], ['detected_at', 'timestamptz'],
    ]) }}

),

renamed as (

    select
        ---------- ids
        user_id,

        ---------- timestamps
        gap_from,
        gap_to,
        detected_at

    from source

)

select * from renamed
