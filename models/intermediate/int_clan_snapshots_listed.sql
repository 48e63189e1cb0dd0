{#-
    One row per clan snapshot: a clan's roster in one landed run. The roster
    is the run's GET /clans/{tag}/members response, or, when the run has no
    successful members fetch (some backfills), the memberList of its
    GET /clans/{tag} response. Built from the fetch log only (no JSON), so
    listing every snapshot stays cheap; the incremental marts pick the new
    ones from here and pass their fetch and run ids down to the staging
    views, which then parse only those payloads.

    A view rather than ephemeral: marts and their unit tests read it as a
    relation, and analysts can query it to see which fetch made a snapshot.
-#}

{{ config(materialized='view') }}

with

fetches as (

    select * from {{ ref('stg_coc__fetches') }}

),

roster_fetches as (

    select
        run_id,
        -- the members endpoint body does not name the clan: the request does
        coalesce(resource_tag, clan_tag) as clan_tag,
        endpoint,
        fetch_id,
        run_source,
        ingestion_version,
        fetched_at,
        snapshot_at

    from fetches
    where
        is_success
        and not is_quarantined
        and endpoint in ('clan_members', 'clan')
        and coalesce(resource_tag, clan_tag) is not null

),

-- grouped by run and clan (not a window): a filter on any grouping column
-- (run_id, clan_tag, snapshot_at) is pushed below the grouping to raw
runs as (

    select
        run_id,
        clan_tag,
        run_source,
        ingestion_version,
        snapshot_at,
        min(fetch_id) filter (
            where endpoint = 'clan_members'
        ) as members_fetch_id,
        min(fetch_id) filter (where endpoint = 'clan') as clan_fetch_id,
        min(fetched_at) filter (
            where endpoint = 'clan_members'
        ) as members_fetched_at,
        min(fetched_at) filter (where endpoint = 'clan') as clan_fetched_at

    from roster_fetches
    group by run_id, clan_tag, run_source, ingestion_version, snapshot_at

),

final as (

    select
        -- ids
        {{ members_snapshot_id('clan_tag', 'run_id') }} as snapshot_id,
        clan_tag,
        run_id,
        coalesce(members_fetch_id, clan_fetch_id) as roster_fetch_id,
        clan_fetch_id,

        -- properties
        case
            when members_fetch_id is not null then 'clan_members' else 'clan'
        end as roster_endpoint,
        run_source,
        ingestion_version,

        -- timestamps
        coalesce(members_fetched_at, clan_fetched_at) as fetched_at,
        snapshot_at

    from runs

)

select * from final
