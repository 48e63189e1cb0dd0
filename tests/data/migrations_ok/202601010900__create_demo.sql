-- First migration: a schema, a table, and a log of the order migrations ran in.
create schema if not exists demo;

create table demo.applied_order (
    seq integer generated always as identity primary key,
    version text not null
);

create table demo.members (
    player_tag text primary key,
    name text not null
);

insert into demo.applied_order (version) values ('202601010900');
