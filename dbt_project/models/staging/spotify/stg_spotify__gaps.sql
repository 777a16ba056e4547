with

source as (

    select * from {{ optional_source('spotify', 'gaps') }}

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
