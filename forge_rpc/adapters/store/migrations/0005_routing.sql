-- 0005_routing: routing rules and provider API keys (RoutingService, issue 5).

-- ---------------------------------------------------------------------------------------------------------
-- Routing rules, editable at runtime. Every replica keeps them all in memory (a request never reads this
-- table) and re-reads it after its own writes and every few seconds for the others'.
-- ---------------------------------------------------------------------------------------------------------
CREATE SEQUENCE routing_rule_numbers;

CREATE TABLE routing_rules (
    id             text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
    -- Creation order: the tie-break between rules of equal priority.
    position       bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    name           text NOT NULL DEFAULT '',
    -- NULL matches every task type.
    task_type      text CHECK (task_type IN ('code_generation', 'code_review', 'chat', 'summarization',
                                             'translation', 'question_answering', 'reasoning',
                                             'creative_writing')),
    service        text NOT NULL CHECK (service <> ''),
    model          text NOT NULL DEFAULT '',
    priority       integer NOT NULL DEFAULT 100 CHECK (priority BETWEEN 1 AND 1000000),
    enabled        boolean NOT NULL DEFAULT true,
    match_metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(match_metadata) = 'object'),
    match_model    text NOT NULL DEFAULT '',
    -- [{"service": …, "model": …}, …], tried in order when the target fails.
    fallbacks      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(fallbacks) = 'array'),
    created_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER routing_rules_touch BEFORE UPDATE ON routing_rules
    FOR EACH ROW EXECUTE FUNCTION forge_touch_updated_at();


-- ---------------------------------------------------------------------------------------------------------
-- Provider API keys set through the API. Only ciphertext is stored: AES-256-GCM under the server key
-- (FORGE_SECRET_KEY, or the generated data_dir/secret.key), with the service name as associated data, so a
-- row copied to another service does not decrypt. `key_id` names the server key that sealed it, so a replica
-- started with another key says so instead of failing obscurely.
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE provider_keys (
    service     text PRIMARY KEY CHECK (service <> ''),
    ciphertext  bytea NOT NULL,
    key_id      text NOT NULL,
    updated_by  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER provider_keys_touch BEFORE UPDATE ON provider_keys
    FOR EACH ROW EXECUTE FUNCTION forge_touch_updated_at();
