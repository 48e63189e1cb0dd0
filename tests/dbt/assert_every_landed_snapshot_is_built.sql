{#-
    A landed clan snapshot older than the newest snapshot built for its clan
    but missing from roster_snapshots: it landed after a later snapshot of
    the clan was built (a run's clock set back, a late copy of old
    responses). The incremental models only build a clan's snapshots newer
    than its newest built one (after_clan_watermark), so such a snapshot
    and the metrics of the later snapshots that should see it wait for
    `clash-pipeline build --full-refresh` (a backfill does one). Returns the
    snapshots to build that way. A snapshot landing while a build runs is
    newer than the built ones and is not reported. A warning, not an error:
    the marts stay sound for every snapshot they hold, and a pipeline run
    with --tests must not fail on it until someone rebuilds.
-#}

{{ config(severity='warn') }}

with

landed as (

    select * from {{ ref('int_clan_snapshots_listed') }}

),

built as (

    select * from {{ ref('roster_snapshots') }}

),

watermarks as (

    select
        clan_tag,
        max(snapshot_at) as built_to_at

    from built
    group by clan_tag

)

select
    landed.clan_tag,
    landed.snapshot_id,
    landed.run_id,
    landed.snapshot_at,
    watermarks.built_to_at

from landed
inner join watermarks
    on landed.clan_tag = watermarks.clan_tag
where
    landed.snapshot_at < watermarks.built_to_at
    and not exists (
        select 1 from built
        where built.snapshot_id = landed.snapshot_id
    )
