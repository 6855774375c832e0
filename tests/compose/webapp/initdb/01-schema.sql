CREATE TABLE visits (id serial PRIMARY KEY, path text NOT NULL); INSERT INTO visits (path) VALUES ('/');
