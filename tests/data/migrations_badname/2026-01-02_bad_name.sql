create table demo.never (id integer);
