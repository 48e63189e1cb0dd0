-- The pipeline release that landed each run, so that snapshots built from raw
-- (by dbt, on any later rebuild) carry the ingestion_version that produced them.

alter table raw.fetch_runs add column ingestion_version text;

comment on column raw.fetch_runs.ingestion_version is
    'clash-pipeline version that landed the run (NULL: unknown, landed before '
    'this column existed).';
