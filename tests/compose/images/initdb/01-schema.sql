CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL);
CREATE DATABASE reporting;
\c reporting
CREATE TABLE daily (day date PRIMARY KEY, total int);
\set greeting 'hello from psql'
INSERT INTO daily VALUES ('2026-12-01', 7);
