-- Removes everything the up migration created (the whole chat schema) and nothing else.
DROP SCHEMA chat CASCADE;
