-- The migrations the crate documentation's first example names: an
-- attribute's migrations directory must exist when the test compiles.
-- Not packaged (see Cargo.toml's `exclude`).
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL);
