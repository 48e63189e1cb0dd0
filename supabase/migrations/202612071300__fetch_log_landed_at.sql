-- When each fetch-log row was landed (the wall clock of the landing
-- transaction), as raw.fetch_runs.landed_at is for runs. dbt source
-- freshness reads these two columns, so a fresh source means "the pipeline
-- landed something recently": fetched_at and snapshot_at are the times the
-- data describes, in the past for simulated or backfilled history.
--
-- Rows landed before this migration take their run's landed_at: they were
-- written in the transaction that inserted the run.

alter table raw.fetch_log add column landed_at timestamptz;

update raw.fetch_log as fetch_log
set landed_at = fetch_runs.landed_at
from raw.fetch_runs as fetch_runs
where fetch_runs.run_id = fetch_log.run_id;

alter table raw.fetch_log
    alter column landed_at set default clock_timestamp(),
    alter column landed_at set not null;

comment on column raw.fetch_log.landed_at is
    'When the row was written (wall clock, set by the database at insert); '
    'dbt source freshness reads it.';

comment on column raw.fetch_runs.landed_at is
    'When the run''s transaction wrote it (wall clock, set by the database '
    'at insert); dbt source freshness reads it.';

-- freshness is max(landed_at): one index probe, not a scan of raw
create index fetch_log_landed_idx on raw.fetch_log (landed_at);
create index fetch_runs_landed_idx on raw.fetch_runs (landed_at);
