with

source as (

    select * from {{ optional_source('spotify_export', 'export_files', [
        ['_dlt_load_id', 'text'], ['user_id', 'text'], ['file_number', 'integer'], ['source_file', 'text'], ['export_format', 'text'],
        ['rows_read', 'bigint'], ['first_played_at', 'timestamptz'], ['last_played_at', 'timestamptz'],
        ['imported_at', 'timestamptz'],
    ]) }}

),

renamed as (

    select
        ---------- ids
        _dlt_load_id as load_id,
        user_id,

        ---------- text
        source_file,
        export_format,

        ---------- numerics
        file_number,
        rows_read,

        ---------- timestamps
        first_played_at,
        last_played_at,
        imported_at

    from source

)

select * from renamed
