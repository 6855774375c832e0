CREATE TABLE visits (
    id serial PRIMARY KEY,
    who text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
