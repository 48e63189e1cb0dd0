-- The door (src/clash_pipeline/ingest/checks.py): a response that breaks what
-- the marts rely on (a clan body whose memberList merges two recordings, a
-- member list of another clan, a war that ended after it was fetched ...) is
-- still landed, so nothing is lost, but marked with why: the staging views
-- leave such rows out, so one bad body cannot fail the build of every clan.

alter table raw.fetch_log add column quarantine_reason text;

alter table raw.fetch_log add constraint fetch_log_quarantine_has_payload
    check (quarantine_reason is null or payload_hash is not null);

comment on column raw.fetch_log.quarantine_reason is
    'Why the body was kept out of the marts (the door checks'' codes and '
    'reasons), or NULL for a body the marts use.';
