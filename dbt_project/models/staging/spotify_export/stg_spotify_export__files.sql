with

source as (

    select * from {{ optional_source('spotify_export', 'export_files') }}

),

renamed as (

    select
        ---------- ids
        _dlt_load_id as load_id,
        user_id,

        ---------- text
        source_file,
        export_format,
        -- what the file holds (the importer decides, also for files logged before the column existed)
        file_kind,

        ---------- numerics
        file_number,
        rows_read,

        ---------- timestamps
        first_played_at,
        -- account data truncates to the minute: its last play ended within the minute it names
        case
            when export_format = 'account' then last_played_at + interval '1 minute'
            else last_played_at
        end as last_played_at,
        imported_at

    from source

)

select * from renamed
