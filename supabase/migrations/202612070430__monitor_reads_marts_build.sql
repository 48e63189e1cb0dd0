-- The pipeline's own monitor phase judges a build before it is published, so it
-- reads marts_build; it runs as the ingest job (it writes ops.alerts). dbt
-- grants SELECT on each model there to clash_ingest (dbt_project.yml +grants);
-- this gives the schema's USAGE. Readers (clash_readonly) still have none: a
-- build in progress stays unreadable to them.

grant usage on schema marts_build to clash_ingest;
