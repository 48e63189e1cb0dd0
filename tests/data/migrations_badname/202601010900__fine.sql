create schema if not exists demo;
