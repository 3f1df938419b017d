-- 0001 legacy baseline
--
-- The tables the platform backend created before the shared-instances schema
-- (spec, "Existing Tables"), so that later migrations and the legacy data
-- migration (0005) have something to refer to on a fresh database.
--
-- IF NOT EXISTS: on the platform's database the backend already created them,
-- and this file must change nothing there. The TIMESTAMP (without time zone)
-- columns are kept on purpose: they describe what already exists. Spec defect 6
-- is fixed in the new tables (0002) and when legacy rows are copied (0005).
-- No BEGIN/COMMIT: the migrator runs each file in its own transaction (defect 5).

CREATE TABLE IF NOT EXISTS users (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email         VARCHAR(255) UNIQUE NOT NULL,
    password_hash VARCHAR(255),
    name          VARCHAR(255),
    created_at    TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at    TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS mcp_types (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name        VARCHAR(100) UNIQUE NOT NULL,
    description TEXT,
    icon_url    VARCHAR(500),
    category    VARCHAR(100),
    is_active   BOOLEAN DEFAULT true,
    created_at  TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS mcp_instances (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id               UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    mcp_type_id           UUID NOT NULL REFERENCES mcp_types(id),
    name                  VARCHAR(255) NOT NULL,
    config                JSONB DEFAULT '{}',
    is_active             BOOLEAN DEFAULT false,
    status                VARCHAR(50) DEFAULT 'inactive',
    process_id            INTEGER,
    access_token          VARCHAR(255) UNIQUE,
    encrypted_credentials TEXT,
    created_at            TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at            TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
