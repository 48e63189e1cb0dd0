-- Every member of every recent clan snapshot has its metrics: the flow and
-- tenure rows always, the rush rows when the snapshot has the member's
-- profile (fetched in the run or carried forward), and ACE with its six
-- components for both windows; every row has the member snapshot's
-- profile_fetched_at; and ACE's stored value equals 100 * sigma(core) * avail
-- recomputed from the components of its own row.

with

recent_members as (

    select
        snapshot_id,
        player_tag,
        has_profile,
        profile_fetched_at

    from {{ ref('member_snapshot_stats') }} as stats
    -- each clan's last staging_test_days days (macros/recent_window.sql)
    where {{ recent_window('snapshot_at', per='clan_tag', alias='stats') }}

),

counted as (

    select
        recent_members.snapshot_id,
        recent_members.player_tag,
        recent_members.has_profile,
        count(metrics.metric_name) filter (
            where metrics.metric_name in (
                'donations_given', 'donations_received', 'donation_balance',
                'donation_ratio', 'active_days'
            )
        ) as flow_rows,
        count(metrics.metric_name) filter (
            where metrics.metric_name in ('tenure_days', 'total_tenure_days')
        ) as tenure_rows,
        count(metrics.metric_name) filter (
            where metrics.metric_name in ('hero_rush_pct', 'lab_rush_pct')
        ) as rush_rows,
        count(metrics.metric_name) filter (
            where metrics.metric_name like 'ace%'
        ) as ace_rows,
        count(metrics.metric_name) filter (
            where
                metrics.profile_fetched_at
                is distinct from recent_members.profile_fetched_at
        ) as other_profile_rows

    from recent_members
    left join {{ ref('metrics') }} as metrics
        on
            recent_members.snapshot_id = metrics.snapshot_id
            and recent_members.player_tag = metrics.player_tag
    group by
        recent_members.snapshot_id,
        recent_members.player_tag,
        recent_members.has_profile

),

incomplete as (

    select
        snapshot_id,
        player_tag,
        'missing metric rows' as problem

    from counted
    where
        flow_rows <> 15
        or tenure_rows <> 2
        or ace_rows <> 14
        or rush_rows <> case when has_profile then 2 else 0 end

),

other_profiles as (

    select
        snapshot_id,
        player_tag,
        'metrics with another profile_fetched_at' as problem

    from counted
    where other_profile_rows > 0

),

ace_mismatches as (

    select
        metrics.snapshot_id,
        metrics.player_tag,
        'ace <> 100 * sigma(core) * avail' as problem

    from {{ ref('metrics') }} as metrics
    inner join recent_members
        on
            metrics.snapshot_id = recent_members.snapshot_id
            and metrics.player_tag = recent_members.player_tag
    where
        metrics.metric_name = 'ace'
        and abs(
            metrics.value
            - 100 * (metrics.components ->> 'avail')::numeric
            / (
                1 + exp(
                    -1.1 * greatest(
                        -6, least(6, (metrics.components ->> 'core')::numeric)
                    )
                )
            )
        ) > 0.001

)

select * from incomplete
union all
select * from other_profiles
union all
select * from ace_mismatches
