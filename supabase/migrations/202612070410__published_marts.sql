-- Published builds: readers never see a build in progress.
--
-- dbt builds the marts into marts_build (dbt_project.yml). Readers (API,
-- dashboard, analysts, as clash_readonly) read marts, which the pipeline
-- brings to the content of marts_build in one transaction when it keeps a
-- build (src/clash_pipeline/transform/publish.py). A crash during a build
-- leaves marts at the previous published build.
--
-- The transform job (any login that is a member of clash_transform) creates
-- the tables in both schemas and so owns them; it grants SELECT on each
-- published relation to clash_readonly when it creates it. clash_readonly
-- gets no USAGE on marts_build: a build in progress is not readable.

create schema if not exists marts_build;

comment on schema marts_build is
    'Where dbt builds the marts; readers read the published copy in schema marts.';

grant usage, create on schema marts_build to clash_transform;
grant usage, create on schema marts to clash_transform;
revoke all on schema marts_build from public;
