-- 0003_model_repository: what ModelsService's repository RPCs need beyond 0001's model_preferences.
--
-- 0001 already holds the preferences (description, favourite, default, tags), the vanished flag (`available`),
-- `last_seen_at` and the at-most-one-default partial unique index. This adds which provider served a model at
-- the last sync, when it vanished, and bounds that keep one bad write from bloating every model listing (the
-- servicer checks the same limits first and names the bad field; these are the backstop).

-- Provider kind ('ollama', 'openai', …) that listed the model when it was last seen; '' while it is missing.
ALTER TABLE model_preferences ADD COLUMN provider text NOT NULL DEFAULT '';

-- When a sync first found it gone (NULL while available): "missing since" is what an operator asks.
ALTER TABLE model_preferences ADD COLUMN missing_since timestamptz;

-- Rows written before this migration keep working: NOT VALID checks new writes only, so an existing database
-- never fails to migrate over an odd old row (`ALTER TABLE … VALIDATE CONSTRAINT` can check them later).
ALTER TABLE model_preferences
    ADD CONSTRAINT model_preferences_name_shape
        CHECK (length(name) BETWEEN 1 AND 256 AND name !~ '[[:space:][:cntrl:]]') NOT VALID,
    ADD CONSTRAINT model_preferences_description_length CHECK (length(description) <= 4000) NOT VALID,
    ADD CONSTRAINT model_preferences_tag_count CHECK (cardinality(tags) <= 32) NOT VALID,
    -- A missing model has no provider, and an available one has no "missing since".
    ADD CONSTRAINT model_preferences_availability
        CHECK (CASE WHEN available THEN missing_since IS NULL ELSE provider = '' END) NOT VALID;
