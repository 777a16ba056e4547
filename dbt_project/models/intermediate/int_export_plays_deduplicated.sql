-- The export's plays, each once: an account-data play (names, minute precision) that the extended
-- history also holds is dropped in favour of the extended one (URIs, seconds, playback fields).
--
-- Each CTE reads a relation once: PostgreSQL computes a CTE that is read twice in full, before the
-- filters of the models reading this view could reach the raw tables' (user_id, time) keys.
with

extended_plays as (

    select
        *,
        null::bigint as rank_in_minute
    from {{ ref('int_export_plays_unioned') }}
    where export_format = 'extended'

),

-- Several account plays of one item can end in the same minute (skips, repeats): the k-th of them
-- is dropped only when the extended history holds at least k plays of the item in its window, so
-- an account play is never taken for an extended play that another one already stands for.
account_plays_ranked as (

    select
        *,
        row_number() over (
            partition by user_id, content_type, track_name, artist_name, episode_name, show_name, chapter_title, played_at
            order by ms_played, export_play_id
        ) as rank_in_minute
    from {{ ref('int_export_plays_unioned') }}
    where export_format = 'account'

),

account_plays_not_in_extended as (

    select account_plays_ranked.*
    from account_plays_ranked
    -- a lateral count, not a join: it probes the raw table's (user_id, ts) key per account play,
    -- where the planner could otherwise hash the whole extended history
    cross join lateral (
        select count(*) as plays_in_window
        from {{ ref('stg_spotify_export__extended_plays') }} as extended
        where
            extended.user_id = account_plays_ranked.user_id
            and extended.played_at
            between account_plays_ranked.match_window_start and account_plays_ranked.match_window_end
            and extended.content_type = account_plays_ranked.content_type
            and (
                (
                    account_plays_ranked.content_type = 'track'
                    and extended.track_name = account_plays_ranked.track_name
                    -- account data's "Unknown Artist" (null here) stands for a name it lacks
                    and (account_plays_ranked.artist_name is null or extended.artist_name = account_plays_ranked.artist_name)
                )
                or (
                    account_plays_ranked.content_type = 'episode'
                    and extended.episode_name = account_plays_ranked.episode_name
                    and (account_plays_ranked.show_name is null or extended.show_name = account_plays_ranked.show_name)
                )
                or (
                    account_plays_ranked.content_type = 'audiobook'
                    and extended.chapter_title = account_plays_ranked.chapter_title
                )
            )
    ) as in_extended
    where account_plays_ranked.rank_in_minute > in_extended.plays_in_window

),

final as (

    select * from extended_plays

    union all

    select * from account_plays_not_in_extended

)

select * from final
