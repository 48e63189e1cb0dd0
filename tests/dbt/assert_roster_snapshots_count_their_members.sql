{#-
    roster_snapshots.member_count equals the member_snapshot_stats rows of
    the snapshot (within the data-test window of member_snapshot_stats).
    Returns the snapshots that disagree.
-#}

with

roster_snapshots as (

    select * from {{ ref('roster_snapshots') }} as snapshots
    -- each clan's last staging_test_days days (macros/recent_window.sql)
    where {{ recent_window('snapshot_at', per='clan_tag', alias='snapshots') }}

),

member_counts as (

    select
        snapshot_id,
        count(*) as stats_rows

    from {{ ref('member_snapshot_stats') }}
    where
        snapshot_id in (
            select roster_snapshots.snapshot_id from roster_snapshots
        )
    group by snapshot_id

)

select
    roster_snapshots.snapshot_id,
    roster_snapshots.member_count,
    coalesce(member_counts.stats_rows, 0) as stats_rows

from roster_snapshots
left join member_counts
    on roster_snapshots.snapshot_id = member_counts.snapshot_id
where roster_snapshots.member_count <> coalesce(member_counts.stats_rows, 0)
