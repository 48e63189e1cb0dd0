create table demo.third (id integer primary key);
