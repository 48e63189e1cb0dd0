create table demo.second (id integer primary key);
insert into demo.first (id) values (1);
selec 1;
