-- 0012 registry port deferrable
--
-- `registry import` applies a directory as one set: swapping two services' ports is one import.
-- Upserted row by row, the swap broke UNIQUE (port) half-way, because a non-deferrable unique
-- constraint is checked at every row. Deferrable, the import checks it when it commits
-- (`SET CONSTRAINTS ... DEFERRED` in its transaction); every other writer still has it checked
-- at once (INITIALLY IMMEDIATE). No ON CONFLICT uses port as its arbiter, which a deferrable
-- constraint could not be.

ALTER TABLE service_registry
    DROP CONSTRAINT service_registry_port_key,
    ADD CONSTRAINT service_registry_port_key UNIQUE (port) DEFERRABLE INITIALLY IMMEDIATE;
