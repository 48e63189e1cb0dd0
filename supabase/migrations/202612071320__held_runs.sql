-- Per-clan isolation of data tests (issue 13): a landed run whose data fails a
-- dbt data test is held back from the marts, so that the other clans' runs of
-- the same build still advance (src/clash_pipeline/transform/isolation.py).
--
-- ops.held_runs  one row per held raw run: the clan, the tests that failed on
--                its rows (names, failing-row counts, a few sample rows) and
--                the operator's decision. The staging base view
--                base_coc__fetch_runs leaves out every run that is `held` or
--                `dropped`, so every model sees the same raw without it.
--   held      left out of the marts; the monitor keeps a `held_runs` alert
--             open for the clan
--   released  `clash-pipeline build --release CLAN`: built again (a full
--             refresh; held again if its data still fails a test)
--   dropped   `clash-pipeline build --drop-held CLAN`: left out for good (the
--             raw data stays), the alert resolves
-- Written by the transform job (it decides during the build).

create table if not exists ops.held_runs (
    run_id uuid primary key references raw.fetch_runs (run_id),
    clan_tag text not null,
    status text not null default 'held'
        check (status in ('held', 'released', 'dropped')),
    snapshot_at timestamptz,
    build_id uuid,
    tests jsonb not null default '[]'::jsonb,
    held_at timestamptz not null default clock_timestamp(),
    decided_at timestamptz,
    constraint held_runs_decided_has_time
        check ((status = 'held') = (decided_at is null))
);

comment on table ops.held_runs is
    'Landed runs held back from the marts because their data failed a dbt data '
    'test (per-clan isolation): the tests, sample failing rows, and the '
    'operator''s decision (released, dropped).';

create index if not exists held_runs_clan_idx on ops.held_runs (clan_tag, status);

grant select, insert, update, delete on ops.held_runs to clash_transform;
grant select on ops.held_runs to clash_ingest, clash_readonly;

-- A run whose data was held back is `held`, neither failed nor succeeded: it
-- landed, and the clan's marts stay at its previous published build.
alter table ops.ingest_runs drop constraint if exists ingest_runs_status_check;
alter table ops.ingest_runs add constraint ingest_runs_status_check
    check (status in (
        'running', 'succeeded', 'failed', 'skipped', 'partial', 'cancelled', 'held'
    ));

alter table ops.ingest_logs drop constraint if exists ingest_logs_status_check;
alter table ops.ingest_logs add constraint ingest_logs_status_check
    check (status in (
        'running', 'succeeded', 'failed', 'skipped', 'retrying', 'cancelled', 'held'
    ));
