-- Run once as a superuser of the external TimescaleDB server (psql -f prepare.sql), before `amr db up`.
-- amr_owner owns the database and runs the migrations; it may create the three service roles (CREATEROLE), which
-- `amr db up` then creates with the passwords of the state dir's credentials.toml.
CREATE ROLE amr_owner LOGIN CREATEROLE PASSWORD 'CHANGE-ME';
CREATE DATABASE amr OWNER amr_owner;
\connect amr
CREATE EXTENSION IF NOT EXISTS timescaledb;  -- not a trusted extension: a superuser creates it
ALTER SCHEMA public OWNER TO amr_owner;
REVOKE ALL ON DATABASE amr FROM PUBLIC;
