{#-
    Which stretches of time the stored history covers, per user and content type (track, episode,
    audiobook, video), and by what:

    - `api`: tracks only (the API lists nothing else), from the oldest play the API showed to the
      latest API load, except detected gaps (a full window of 50 after the cursor: plays in between
      may be lost);
    - `export`: from the first to the last play of each import's files of one kind, for the content
      types that kind of file holds. An export's files split one continuous history (by size, or
      per year), so they cover the time between them too; account data's last minute counts whole
      (stg_spotify_export__files). A podcast-only file covers podcasts, never music;
    - `api and export`, or `none` (between covered stretches).

    Gaps keep their own rows: `gap_status` is `open` while nothing covers them and `filled` once an
    imported export covers them. Small inputs only (API span per user, gaps, the import log), so
    it is rebuilt in full.
-#}

with

api_plays as (

    select * from {{ ref('stg_spotify__plays') }}

),

gaps as (

    select * from {{ ref('stg_spotify__gaps') }}

),

export_files as (

    select * from {{ ref('stg_spotify_export__files') }}

),

-- what each kind of file holds
file_contents as (

    select * from (
        values
            ('extended_audio', 'track'),
            ('extended_audio', 'episode'),
            ('extended_audio', 'audiobook'),
            ('extended_video', 'video'),
            ('account_music', 'track'),
            ('account_podcast', 'episode'),
            ('account_audiobook', 'audiobook')
    ) as file_contents (file_kind, content_type)

),

api_spans as (

    select
        user_id,
        'track' as content_type,
        min(played_at) as span_start,
        -- a load covers everything up to when it ran, even when nothing was played
        greatest(max(played_at), to_timestamp(max(load_id)::double precision)) as span_end
    from api_plays
    group by 1, 2

),

api_gaps as (

    select
        user_id,
        'track' as content_type,
        gap_from,
        gap_to
    from gaps

),

export_spans as (

    select
        export_files.user_id,
        file_contents.content_type,
        min(export_files.first_played_at) as span_start,
        max(export_files.last_played_at) as span_end
    from export_files
    inner join file_contents on export_files.file_kind = file_contents.file_kind
    where export_files.first_played_at is not null
    group by export_files.load_id, export_files.user_id, file_contents.file_kind, file_contents.content_type

),

boundaries as (

    select user_id, content_type, span_start as boundary from api_spans
    union select user_id, content_type, span_end from api_spans
    union select user_id, content_type, span_start from export_spans
    union select user_id, content_type, span_end from export_spans
    union select user_id, content_type, gap_from from api_gaps
    union select user_id, content_type, gap_to from api_gaps

),

segments as (

    select
        user_id,
        content_type,
        boundary as segment_start,
        lead(boundary) over (partition by user_id, content_type order by boundary) as segment_end
    from boundaries

),

flagged as (

    select
        segments.user_id,
        segments.content_type,
        segments.segment_start,
        segments.segment_end,
        exists (
            select from api_spans
            where
                api_spans.user_id = segments.user_id
                and api_spans.content_type = segments.content_type
                and api_spans.span_start <= segments.segment_start
                and api_spans.span_end >= segments.segment_end
        ) as in_api_span,
        exists (
            select from api_gaps
            where
                api_gaps.user_id = segments.user_id
                and api_gaps.content_type = segments.content_type
                and api_gaps.gap_from <= segments.segment_start
                and api_gaps.gap_to >= segments.segment_end
        ) as is_gap,
        exists (
            select from export_spans
            where
                export_spans.user_id = segments.user_id
                and export_spans.content_type = segments.content_type
                and export_spans.span_start <= segments.segment_start
                and export_spans.span_end >= segments.segment_end
        ) as has_export
    from segments
    where segments.segment_end is not null

),

labelled as (

    select
        user_id,
        content_type,
        segment_start,
        segment_end,
        case
            when in_api_span and not is_gap and has_export then 'api and export'
            when in_api_span and not is_gap then 'api'
            when has_export then 'export'
            else 'none'
        end as covered_by,
        case
            when is_gap and has_export then 'filled'
            when is_gap then 'open'
        end as gap_status
    from flagged

),

marked as (

    select
        *,
        case
            when
                lag(covered_by) over (partition by user_id, content_type order by segment_start) is not distinct from covered_by
                and lag(gap_status) over (partition by user_id, content_type order by segment_start) is not distinct from gap_status
                then 0
            else 1
        end as starts_island
    from labelled

),

islands as (

    -- consecutive segments with the same labels become one range (gaps and islands)
    select
        *,
        sum(starts_island) over (partition by user_id, content_type order by segment_start) as island
    from marked

),

final as (

    select
        user_id,
        content_type,
        min(segment_start) as covered_from,
        max(segment_end) as covered_to,
        covered_by,
        gap_status is not null as is_gap,
        gap_status
    from islands
    group by user_id, content_type, island, covered_by, gap_status

)

select * from final
