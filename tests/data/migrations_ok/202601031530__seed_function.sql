create function demo.rush_pct(done integer, total integer) returns numeric
language sql immutable
as $$
    select case when total = 0 then 0 else round(100.0 * done / total, 1) end;
$$;

insert into demo.members (player_tag, name, trophies) values
    ('#2PP', 'Alice', 5000),
    ('#8QV', 'Bob; the builder', 4200);

insert into demo.applied_order (version) values ('202601031530');
