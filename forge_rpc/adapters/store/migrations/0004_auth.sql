-- 0004_auth: users, login sessions (rotating refresh tokens) and API keys (issue 5).
--
-- No secret is stored in a form that can be used: passwords as argon2id hashes, refresh tokens and API keys as
-- SHA-256 of the secret (both are 256-bit random values, so a fast hash is enough: there is nothing to
-- brute-force). Ids are random text ('usr_…', 'key_…'), never sequential, so they reveal no account count.

CREATE TABLE auth_users (
    id             text PRIMARY KEY,
    username       text NOT NULL,
    email          text,
    full_name      text NOT NULL DEFAULT '',
    password_hash  text NOT NULL,            -- argon2id, PHC string format (parameters included)
    role           text NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
    disabled       boolean NOT NULL DEFAULT false,
    -- auth.v1.Limits as JSON: requests_per_minute, tokens_per_minute, max_concurrent_streams, budget_usd,
    -- token_quota, budget_period. An absent key inherits the server default.
    limits         jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz
);

-- Logins match the username or the email case-insensitively. Registration also keeps one account's email
-- from being another's username (checked under an advisory lock, as two unique indexes cannot say it).
CREATE UNIQUE INDEX auth_users_username ON auth_users (lower(username));
CREATE UNIQUE INDEX auth_users_email ON auth_users (lower(email)) WHERE email IS NOT NULL;
CREATE INDEX auth_users_created_at ON auth_users (created_at, id);

CREATE TRIGGER auth_users_touch BEFORE UPDATE ON auth_users
    FOR EACH ROW EXECUTE FUNCTION forge_touch_updated_at();


-- Login sessions and their refresh tokens. Every Login starts a session (the tokens' family); every Refresh
-- marks the presented token rotated and issues its successor in the same session. A rotated token presented
-- again means it was stolen or replayed: the whole session is revoked, so neither the thief nor the victim can
-- go on with it. Rotation locks the session row, so a concurrent Logout or reuse cannot miss a new token.
CREATE TABLE auth_sessions (
    id              text PRIMARY KEY,       -- access tokens carry it as `sid`
    user_id         text NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    revoked_reason  text CHECK (revoked_reason IN ('logout', 'reuse', 'disabled'))
);

CREATE INDEX auth_sessions_user ON auth_sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE auth_refresh_tokens (
    token_sha256  text PRIMARY KEY,
    session_id    text NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    rotated_at    timestamptz               -- exchanged for its successor; presenting it again is reuse
);

CREATE INDEX auth_refresh_tokens_session ON auth_refresh_tokens (session_id);
CREATE INDEX auth_refresh_tokens_expires_at ON auth_refresh_tokens (expires_at);


CREATE TABLE auth_api_keys (
    id              text PRIMARY KEY,
    user_id         text NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    name            text NOT NULL,
    prefix          text NOT NULL,          -- the secret's first characters, to recognise it ('fk_3xq9…')
    secret_sha256   text NOT NULL UNIQUE,   -- the lookup on every uncached request
    scopes          text[] NOT NULL DEFAULT '{*}',
    allowed_models  text[] NOT NULL DEFAULT '{}',   -- names or globs; empty allows every model
    limits          jsonb NOT NULL DEFAULT '{}',    -- as auth_users.limits, within the user's
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    last_used_at    timestamptz,            -- written in batches, off the request path
    revoked_at      timestamptz             -- kept, not deleted, for the audit trail
);

CREATE INDEX auth_api_keys_user_created_at ON auth_api_keys (user_id, created_at DESC, id);
