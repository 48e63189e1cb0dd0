-- Several statements, a DO block with named dollar quoting, and a literal '%'.
alter table demo.members add column trophies integer not null default 0;

do $guard$
begin
    if not exists (select from pg_roles where rolname = 'clash_test_demo_reader') then
        create role clash_test_demo_reader nologin;
    end if;
end
$guard$;

comment on column demo.members.trophies is 'Trophies (100% of them); text with ; and $$ inside';

insert into demo.applied_order (version) values ('202601021200');
