create schema if not exists demo;
create table demo.first (id integer primary key);
