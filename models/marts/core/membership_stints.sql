{#-
    One row per stint: an unbroken run of a clan's snapshots in which the
    clan's roster lists the member (gaps and islands over the clan's
    snapshots). A member absent from one snapshot and back in a later one
    has two stints. joined_at is the first snapshot of the stint, left_at
    the first snapshot of the clan without the member (NULL while current).

    Incremental (merge on clan, player, stint number): a build folds only
    the clan's snapshots after the last one already folded in. The member's
    open stint continues when the member is in the batch's first snapshot
    and is closed otherwise; later islands become new stints numbered after
    the member's last one. Reads roster_snapshots and member_snapshot_stats
    (typed tables, no JSON); a full refresh gives the same rows.
-#}

{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key=['clan_tag', 'player_tag', 'stint_number'],
        on_schema_change='fail',
        indexes=[
            {
                'columns': ['clan_tag', 'player_tag', 'stint_number'],
                'unique': True,
            },
            {'columns': ['clan_tag', 'is_current']},
            {'columns': ['player_tag']},
        ],
    )
}}

with

roster_snapshots as (

    select * from {{ ref('roster_snapshots') }}

),

member_snapshot_stats as (

    select * from {{ ref('member_snapshot_stats') }}

),

{% if is_incremental() %}

    -- per clan, the latest snapshot already folded into the stints
    folded_through as (

        select
            clan_tag,
            max(coalesce(left_at, last_seen_at)) as folded_through_at

        from {{ this }}
        group by clan_tag

    ),

{% endif %}

clan_first_snapshots as (

    select
        clan_tag,
        min(snapshot_at) as first_snapshot_at

    from roster_snapshots
    group by clan_tag

),

clan_snapshots as (

    select
        roster_snapshots.clan_tag,
        roster_snapshots.snapshot_id,
        roster_snapshots.snapshot_at,
        row_number() over (
            partition by roster_snapshots.clan_tag
            order by roster_snapshots.snapshot_at, roster_snapshots.snapshot_id
        ) as snapshot_seq

    from roster_snapshots
    {% if is_incremental() %}
        left join folded_through
            on roster_snapshots.clan_tag = folded_through.clan_tag
        where
            roster_snapshots.snapshot_at
            > coalesce(folded_through.folded_through_at, '-infinity')
    {% endif %}

),

presences as (

    select
        clan_snapshots.clan_tag,
        member_snapshot_stats.player_tag,
        clan_snapshots.snapshot_seq

    from clan_snapshots
    inner join member_snapshot_stats
        on clan_snapshots.snapshot_id = member_snapshot_stats.snapshot_id

),

-- consecutive snapshots of a member share snapshot_seq - row_number()
islands as (

    select
        clan_tag,
        player_tag,
        snapshot_seq,
        snapshot_seq - row_number() over (
            partition by clan_tag, player_tag order by snapshot_seq
        ) as island_key

    from presences

),

batch_stints as (

    select
        clan_tag,
        player_tag,
        min(snapshot_seq) as first_seq,
        max(snapshot_seq) as last_seq,
        count(*)::integer as snapshot_count,
        row_number() over (
            partition by clan_tag, player_tag order by min(snapshot_seq)
        ) as batch_stint_number

    from islands
    group by clan_tag, player_tag, island_key

),

bounded_stints as (

    select
        batch_stints.clan_tag,
        batch_stints.player_tag,
        batch_stints.first_seq,
        batch_stints.batch_stint_number,
        batch_stints.snapshot_count,
        first_snapshot.snapshot_id as first_snapshot_id,
        first_snapshot.snapshot_at as joined_at,
        last_snapshot.snapshot_id as last_snapshot_id,
        last_snapshot.snapshot_at as last_seen_at,
        next_snapshot.snapshot_id as left_snapshot_id,
        next_snapshot.snapshot_at as left_at

    from batch_stints
    inner join clan_snapshots as first_snapshot
        on
            batch_stints.clan_tag = first_snapshot.clan_tag
            and batch_stints.first_seq = first_snapshot.snapshot_seq
    inner join clan_snapshots as last_snapshot
        on
            batch_stints.clan_tag = last_snapshot.clan_tag
            and batch_stints.last_seq = last_snapshot.snapshot_seq
    left join clan_snapshots as next_snapshot
        on
            batch_stints.clan_tag = next_snapshot.clan_tag
            and batch_stints.last_seq + 1 = next_snapshot.snapshot_seq

),

{% if is_incremental() %}

    open_stints as (

        select * from {{ this }}
        where is_current

    ),

    stored_stint_counts as (

        select
            clan_tag,
            player_tag,
            max(stint_number) as last_stint_number

        from {{ this }}
        where (clan_tag, player_tag) in (
                select
                    bounded_stints.clan_tag,
                    bounded_stints.player_tag
                from bounded_stints
            )
        group by clan_tag, player_tag

    ),

    -- open stints whose member is in the batch's first snapshot: they go on
    continued_stints as (

        select open_stints.*

        from open_stints
        inner join bounded_stints
            on
                open_stints.clan_tag = bounded_stints.clan_tag
                and open_stints.player_tag = bounded_stints.player_tag
                and bounded_stints.first_seq = 1

    ),

    -- islands of the batch with the member's open stint, when it goes on
    continuations as (

        select
            bounded_stints.*,
            coalesce(stored_stint_counts.last_stint_number, 0)
                as last_stint_number,
            continued_stints.player_tag is not null as has_continued_stint,
            continued_stints.player_tag is not null
            and bounded_stints.batch_stint_number = 1 as is_continued,
            continued_stints.first_snapshot_id as open_first_snapshot_id,
            continued_stints.joined_at as open_joined_at,
            continued_stints.snapshot_count as open_snapshot_count

        from bounded_stints
        left join stored_stint_counts
            on
                bounded_stints.clan_tag = stored_stint_counts.clan_tag
                and bounded_stints.player_tag = stored_stint_counts.player_tag
        left join continued_stints
            on
                bounded_stints.clan_tag = continued_stints.clan_tag
                and bounded_stints.player_tag = continued_stints.player_tag

    ),

    -- the first island continues the open stint; the others are new stints
    -- numbered after the member's last one
    batch_rows as (

        select
            clan_tag,
            player_tag,
            last_stint_number + batch_stint_number
            - case when has_continued_stint then 1 else 0 end as stint_number,
            case
                when is_continued then open_first_snapshot_id
                else first_snapshot_id
            end as first_snapshot_id,
            last_snapshot_id,
            left_snapshot_id,
            case
                when is_continued then open_joined_at else joined_at
            end as joined_at,
            last_seen_at,
            left_at,
            snapshot_count
            + case when is_continued then open_snapshot_count else 0 end
                as snapshot_count

        from continuations

    ),

    -- open stints whose member is not in the batch's first snapshot: closed
    closed_rows as (

        select
            open_stints.clan_tag,
            open_stints.player_tag,
            open_stints.stint_number,
            open_stints.first_snapshot_id,
            open_stints.last_snapshot_id,
            first_new_snapshot.snapshot_id as left_snapshot_id,
            open_stints.joined_at,
            open_stints.last_seen_at,
            first_new_snapshot.snapshot_at as left_at,
            open_stints.snapshot_count

        from open_stints
        inner join clan_snapshots as first_new_snapshot
            on
                open_stints.clan_tag = first_new_snapshot.clan_tag
                and first_new_snapshot.snapshot_seq = 1
        where not exists (
                select 1
                from continued_stints
                where
                    continued_stints.clan_tag = open_stints.clan_tag
                    and continued_stints.player_tag = open_stints.player_tag
            )

    ),

    stints as (

        select * from batch_rows
        union all
        select * from closed_rows

    ),

{% else %}

stints as (

    select
        clan_tag,
        player_tag,
        batch_stint_number as stint_number,
        first_snapshot_id,
        last_snapshot_id,
        left_snapshot_id,
        joined_at,
        last_seen_at,
        left_at,
        snapshot_count

    from bounded_stints

),

{% endif %}

final as (

    select
        -- ids
        stints.clan_tag,
        stints.player_tag,
        stints.stint_number::integer as stint_number,
        stints.first_snapshot_id,
        stints.last_snapshot_id,
        stints.left_snapshot_id,

        -- properties
        stints.left_at is null as is_current,
        stints.joined_at = clan_first_snapshots.first_snapshot_at
            as is_initial_member,

        -- numbers
        stints.snapshot_count::integer as snapshot_count,

        -- timestamps
        stints.joined_at,
        stints.last_seen_at,
        stints.left_at

    from stints
    inner join clan_first_snapshots
        on stints.clan_tag = clan_first_snapshots.clan_tag

)

select * from final
