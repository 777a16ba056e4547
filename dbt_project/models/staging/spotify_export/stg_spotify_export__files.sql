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
        -- imports before `file_kind` existed left it null: the same rule the importer applies to names
        coalesce(
            file_kind,
            case
                when source_file ilike '%streaming\_history\_video%' then 'extended_video'
                when export_format = 'extended' then 'extended_audio'
                when source_file ilike '%podcast%' then 'account_podcast'
                when source_file ilike '%audiobook%' then 'account_audiobook'
                else 'account_music'
            end
        ) as file_kind,

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
