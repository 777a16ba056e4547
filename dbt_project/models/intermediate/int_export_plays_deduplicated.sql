-- The export's plays, each once: an account-data play (names, minute precision) that the extended
-- history also holds is dropped in favour of the extended one (URIs, seconds, playback fields).
with

account_plays as (

    select * from {{ ref('int_export_plays_unioned') }}
    where export_format = 'account'

),

-- Each relation is read once (a CTE read twice would be computed in full); the extended plays are
-- looked up in staging directly.
account_plays_not_in_extended as (

    select account_plays.*
    from account_plays
    -- a lateral lookup with limit 1, not `not exists`: the planner could hash the whole extended
    -- history for an anti-join; this probes the raw table's (user_id, ts) key per account play
    left join lateral (
        select true as is_found
        from {{ ref('stg_spotify_export__extended_plays') }} as extended_plays
        where
            extended_plays.user_id = account_plays.user_id
            and extended_plays.played_at between account_plays.match_window_start and account_plays.match_window_end
            and extended_plays.content_type = account_plays.content_type
            and (
                (
                    account_plays.content_type = 'track'
                    and extended_plays.track_name = account_plays.track_name
                    and extended_plays.artist_name = account_plays.artist_name
                )
                or (
                    account_plays.content_type = 'episode'
                    and extended_plays.episode_name = account_plays.episode_name
                    and extended_plays.show_name = account_plays.show_name
                )
            )
        limit 1
    ) as in_extended on true
    where in_extended.is_found is null

),

final as (

    select * from {{ ref('int_export_plays_unioned') }}
    where export_format = 'extended'

    union all

    select * from account_plays_not_in_extended

)

select * from final
