-- The read-only role (API, dashboards, analysts) reads the marts.
-- dbt grants SELECT on each mart (dbt_project.yml +grants), but a role also
-- needs USAGE on the schema, which dbt does not grant. The schema is created
-- here when dbt has not created it yet; clash_transform may create in it.
-- The API connects with the configured URL and switches to clash_readonly
-- (`set role`) on every connection, so it can read and never write.

create schema if not exists marts;

grant usage, create on schema marts to clash_transform;
grant usage on schema marts to clash_readonly;
grant select on all tables in schema marts to clash_readonly;
