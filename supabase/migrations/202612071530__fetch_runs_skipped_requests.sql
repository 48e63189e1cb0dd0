-- Change-driven polling (src/clash_pipeline/ingest/plan.py): a run fetches a
-- member's profile, the war endpoints, the CWL group and the raid seasons only
-- when something says they changed. Every request it did not make is counted
-- here (by endpoint in the fetch phase's ops.ingest_logs.details.skipped), so
-- requests + skipped_requests is what fetching everything would have cost.

alter table raw.fetch_runs
    add column skipped_requests integer not null default 0
        check (skipped_requests >= 0);

comment on column raw.fetch_runs.skipped_requests is
    'Requests the planner skipped (unchanged member profiles, war endpoints '
    'while not at war, CWL outside CWL days, raid seasons outside raid '
    'weekends, ended CWL wars); 0 for runs landed before the planner and '
    'for backfills.';
