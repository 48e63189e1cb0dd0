-- A run stopped by SIGTERM/SIGINT (or a Prefect cancellation) is `cancelled`,
-- not `failed`: nothing went wrong with the data, the operator stopped it.
-- Its checkpoint rows say `cancelled` too, with the requests made so far.

alter table ops.ingest_runs drop constraint if exists ingest_runs_status_check;
alter table ops.ingest_runs add constraint ingest_runs_status_check
    check (status in ('running', 'succeeded', 'failed', 'skipped', 'partial', 'cancelled'));

alter table ops.ingest_logs drop constraint if exists ingest_logs_status_check;
alter table ops.ingest_logs add constraint ingest_logs_status_check
    check (status in ('running', 'succeeded', 'failed', 'skipped', 'retrying', 'cancelled'));
