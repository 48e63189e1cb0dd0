{#-
    The current members of each clan are exactly the roster of the clan's
    latest snapshot: no current member missing from it, nobody in it who is
    not current. Returns the offending (clan, player) pairs.
-#}

with

roster_snapshots as (

    select * from {{ ref('roster_snapshots') }}

),

latest_snapshots as (

    select distinct on (clan_tag)
        clan_tag,
        snapshot_id

    from roster_snapshots
    order by clan_tag asc, snapshot_at desc, snapshot_id desc

),

latest_roster as (

    select
        stats.clan_tag,
        stats.player_tag

    from {{ ref('member_snapshot_stats') }} as stats
    inner join latest_snapshots
        on stats.snapshot_id = latest_snapshots.snapshot_id

),

current_members as (

    select
        clan_tag,
        player_tag

    from {{ ref('members') }}
    where is_current

),

missing as (

    select
        'in latest roster, not current' as problem,
        latest_roster.*
    from latest_roster
    except
    select
        'in latest roster, not current' as problem,
        current_members.*
    from current_members

),

extra as (

    select
        'current, not in latest roster' as problem,
        current_members.*
    from current_members
    except
    select
        'current, not in latest roster' as problem,
        latest_roster.*
    from latest_roster

)

select
    problem,
    clan_tag,
    player_tag
from missing
union all
select
    problem,
    clan_tag,
    player_tag
from extra
