-- Pacing of each API key shared by every process (issue 14): a GCRA row per key
-- (src/clash_pipeline/clash_api/shared_pacing.py). Every request of every
-- process reserves its start slot here, so however many `clash-pipeline run`
-- / `fetch` processes or Prefect workers share a key, its requests start on one
-- evenly spaced grid at the key's rate. All times are the database's clock
-- (clock_timestamp()): the machines' clocks may differ.
--
-- A key is named by its fingerprint, sha256(token)[:12]: the token never enters
-- the database.
--
--   next_start     the earliest start of the next request (GCRA "theoretical
--                  arrival time"); a reservation moves it one interval past the
--                  slot it hands out, so it is never more than one interval per
--                  reserved request ahead of now: a killed process leaves at
--                  most its in-flight reservations behind, not a far future
--   last_slot      the last slot handed out (a decrease re-spaces from it)
--   paused_until   no request starts before it (a 429/503 cool-down, capped)
--   lowered_rate   after a 429: the rate set by the last decrease (AIMD); it
--                  climbs back by the caller's recovery per whole second from
--                  recover_from; null: the configured rate
--   last_decrease  when the rate was last lowered: a 429 of a request that
--                  started before it is the same congestion event
-- Written by the ingest job.

create table if not exists ops.api_key_pacing (
    key_fingerprint text primary key
        check (key_fingerprint ~ '^[0-9a-f]{12}$'),
    next_start timestamptz,
    last_slot timestamptz,
    paused_until timestamptz,
    lowered_rate double precision check (lowered_rate > 0),
    recover_from timestamptz,
    last_decrease timestamptz,
    requests bigint not null default 0,
    pauses integer not null default 0,
    decreases integer not null default 0,
    updated_at timestamptz not null default clock_timestamp()
);

comment on table ops.api_key_pacing is
    'Request pacing of each API key shared by all processes (GCRA start-slot grid, '
    '429 pause and lowered rate); keys are named by sha256(token)[:12], never the token.';
comment on column ops.api_key_pacing.key_fingerprint is
    'sha256 of the API token, first 12 hex digits.';
comment on column ops.api_key_pacing.next_start is
    'Earliest start of the next request (database clock).';
comment on column ops.api_key_pacing.last_slot is 'Last start slot handed out.';
comment on column ops.api_key_pacing.paused_until is
    'No request starts before this (429/503 cool-down).';
comment on column ops.api_key_pacing.lowered_rate is
    'Rate (req/s) set by the last decrease after a 429; null: the configured rate.';
comment on column ops.api_key_pacing.recover_from is
    'The lowered rate climbs back from this instant.';
comment on column ops.api_key_pacing.last_decrease is 'When the rate was last lowered.';
comment on column ops.api_key_pacing.requests is 'Start slots handed out.';
comment on column ops.api_key_pacing.pauses is 'Cool-downs that extended paused_until.';
comment on column ops.api_key_pacing.decreases is 'Rate decreases (congestion events).';
comment on column ops.api_key_pacing.updated_at is 'Last reservation or throttle.';

-- The rate of a row at instant p_at: lowered_rate + p_recovery per whole second
-- since recover_from, capped at the configured p_rate.
create or replace function ops.api_key_rate_at(
    p_lowered double precision,
    p_recover_from timestamptz,
    p_at timestamptz,
    p_rate double precision,
    p_recovery double precision
) returns double precision
language sql
immutable
as $$
    select case
        when p_lowered is null then p_rate
        else least(
            p_rate,
            p_lowered + greatest(0, floor(extract(epoch from p_at - p_recover_from)))
                * p_recovery
        )
    end
$$;

-- Reserve the next start slot of a key: one round trip per request. Returns the
-- slot, the database's now, the pause and the decrease count (epoch), all times
-- as epoch seconds.
create or replace function ops.reserve_api_slot(
    p_fingerprint text,
    p_rate double precision,
    p_recovery double precision
) returns table (
    slot double precision,
    db_now double precision,
    paused_until double precision,
    rate double precision,
    decreases integer
)
language plpgsql
as $$
declare
    r ops.api_key_pacing%rowtype;
    v_now timestamptz;
    v_slot timestamptz;
    v_rate double precision;
begin
    select * into r from ops.api_key_pacing p
    where p.key_fingerprint = p_fingerprint for update;
    if not found then
        insert into ops.api_key_pacing as p (key_fingerprint) values (p_fingerprint)
        on conflict (key_fingerprint) do nothing;
        select * into r from ops.api_key_pacing p
        where p.key_fingerprint = p_fingerprint for update;
    end if;
    v_now := clock_timestamp();
    v_slot := greatest(v_now, r.next_start, r.paused_until);
    v_rate := ops.api_key_rate_at(r.lowered_rate, r.recover_from, v_slot, p_rate, p_recovery);
    update ops.api_key_pacing p
    set next_start = v_slot + make_interval(secs => 1.0 / v_rate),
        last_slot = v_slot,
        -- fully recovered: back to the configured rate
        lowered_rate = case when v_rate >= p_rate then null else p.lowered_rate end,
        requests = p.requests + 1,
        updated_at = v_now
    where p.key_fingerprint = p_fingerprint;
    return query select
        extract(epoch from v_slot)::double precision,
        extract(epoch from v_now)::double precision,
        extract(epoch from r.paused_until)::double precision,
        v_rate,
        r.decreases;
end
$$;

-- A 429 (p_lower) or 503 of a request of this key: pause every process's
-- requests p_pause_seconds (at most 600) and, once per congestion event, lower
-- the rate to rate x p_backoff (never below p_min_rate). p_sent_at: the start
-- slot of the throttled request (epoch seconds, database clock), or null.
create or replace function ops.throttle_api_key(
    p_fingerprint text,
    p_pause_seconds double precision,
    p_lower boolean,
    p_sent_at double precision,
    p_rate double precision,
    p_recovery double precision,
    p_backoff double precision,
    p_min_rate double precision
) returns table (
    paused_until double precision,
    lowered_rate double precision,
    decreased boolean,
    decreases integer
)
language plpgsql
as $$
declare
    r ops.api_key_pacing%rowtype;
    v_now timestamptz;
    v_until timestamptz;
    v_lowered double precision;
    v_decrease boolean;
begin
    insert into ops.api_key_pacing as p (key_fingerprint) values (p_fingerprint)
    on conflict (key_fingerprint) do nothing;
    select * into r from ops.api_key_pacing p
    where p.key_fingerprint = p_fingerprint for update;
    v_now := clock_timestamp();
    v_until := v_now + make_interval(secs => least(greatest(p_pause_seconds, 0), 600));
    v_decrease := p_lower and p_backoff < 1 and (
        r.last_decrease is null or p_sent_at is null
        or to_timestamp(p_sent_at) >= r.last_decrease
    );
    if v_decrease then
        v_lowered := least(
            p_rate,
            greatest(
                p_min_rate,
                ops.api_key_rate_at(r.lowered_rate, r.recover_from, v_now, p_rate, p_recovery)
                    * p_backoff
            )
        );
    end if;
    update ops.api_key_pacing p
    set paused_until = greatest(p.paused_until, v_until),
        pauses = p.pauses + case when p.paused_until is null or v_until > p.paused_until
            then 1 else 0 end,
        lowered_rate = case when v_decrease then v_lowered else p.lowered_rate end,
        last_decrease = case when v_decrease then v_now else p.last_decrease end,
        recover_from = case when v_decrease
            then greatest(v_now, p.paused_until, v_until) else p.recover_from end,
        next_start = case when v_decrease
            then greatest(
                p.paused_until, v_until,
                p.last_slot + make_interval(secs => 1.0 / v_lowered)
            )
            else p.next_start end,
        decreases = p.decreases + case when v_decrease then 1 else 0 end,
        updated_at = v_now
    where p.key_fingerprint = p_fingerprint
    returning
        extract(epoch from p.paused_until)::double precision,
        p.lowered_rate,
        v_decrease,
        p.decreases
    into paused_until, lowered_rate, decreased, decreases;
    return next;
end
$$;

grant select, insert, update, delete on ops.api_key_pacing to clash_ingest;
grant select on ops.api_key_pacing to clash_readonly;
grant execute on function ops.reserve_api_slot(text, double precision, double precision)
    to clash_ingest;
grant execute on function ops.throttle_api_key(
    text, double precision, boolean, double precision, double precision, double precision,
    double precision, double precision
) to clash_ingest;
