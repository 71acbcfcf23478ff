-- 0006_training: the durable queue of fine-tuning jobs and tasks (issue 6), and its append-only event log.
--
-- 0001 reserved a generic `jobs` / `job_events` pair that no forge ever wrote (no code used it). Its shape does
-- not fit what runs here (uuid ids where seed 001 shows "job_20240117_120000", a five-state machine where
-- training needs ten, events without a per-job sequence), so this migration replaces both empty tables.
--
-- One queue, two lanes: `queue = 'training'` (trainer processes, few at a time) and `queue = 'tasks'` (chat,
-- batch-chat and RAG requests, several at a time). A worker claims the first queued row of its lane with
-- FOR UPDATE SKIP LOCKED and holds a lease (`lease_owner`, `lease_expires_at`) renewed by heartbeat. Every
-- write a worker makes is fenced by (lease_owner, attempt): a worker that lost its lease can no longer touch
-- the row. The reaper requeues rows whose lease expired (or fails them once `max_attempts` were lost).

DROP TABLE job_events;
DROP TABLE jobs;

CREATE TABLE jobs (
    id               text PRIMARY KEY,      -- 'job_20240117_120000_3f9a1c', 'agent_…', 'task_…'
    queue            text NOT NULL CHECK (queue IN ('training', 'tasks')),
    kind             text NOT NULL,         -- 'fine_tune', 'retrain'; tasks: 'chat', 'chat_batch', 'rag_query'…
    state            text NOT NULL DEFAULT 'queued' CHECK (state IN (
                         'queued', 'preparing', 'training', 'evaluating', 'running',
                         'completed', 'failed', 'cancelling', 'cancelled', 'paused')),
    owner            text,                  -- the creating user; NULL with auth off
    -- What the creator's credential allowed (role, API key id, scopes, models): a task is checked against it
    -- when it runs, as the RPC it wraps would check the caller.
    principal        jsonb NOT NULL DEFAULT '{}',
    request_key      text,                  -- the create call's idempotency key
    spec             jsonb NOT NULL DEFAULT '{}',   -- FineTuneConfig (defaults filled in) or the task payload
    priority         integer NOT NULL DEFAULT 5,    -- smaller first (seed 004: 0 is the most urgent)
    attempt          integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),   -- claims so far
    released         integer NOT NULL DEFAULT 0 CHECK (released >= 0),  -- claims handed back (shutdown, pause)
    max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    run_after        timestamptz NOT NULL DEFAULT now(),   -- retry backoff: not claimable before this
    lease_owner      text,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    pause_requested  boolean NOT NULL DEFAULT false,
    message          text NOT NULL DEFAULT '',
    progress         double precision NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 100),
    -- Latest numbers the worker reported: epoch, step, totals, loss, eval_loss, eta_sec, metrics, artifacts.
    status           jsonb NOT NULL DEFAULT '{}',
    result           jsonb,                 -- a task's response; a job's validation/deployment later
    error            jsonb,                 -- Failure: code, reason, message, metadata
    usage            jsonb,                 -- tokens and cost a task used
    runner_ref       jsonb,                 -- where the current attempt runs (host and pid, or a Ray submission)
    last_event_seq   bigint NOT NULL DEFAULT 0,     -- the latest job_events.seq of this row
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    -- A row in a worker's hands has a lease; a row in no worker's hands has none.
    CHECK ((state IN ('preparing', 'training', 'evaluating', 'running', 'cancelling'))
           = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

CREATE INDEX jobs_claimable ON jobs (queue, priority, created_at) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX jobs_owner_created_at ON jobs (queue, owner, created_at DESC);
CREATE INDEX jobs_created_at ON jobs (queue, created_at DESC);
-- A retried create with the same key finds the first row instead of queuing another.
CREATE UNIQUE INDEX jobs_request_key ON jobs (queue, coalesce(owner, ''), request_key) WHERE request_key IS NOT NULL;

CREATE TRIGGER jobs_touch BEFORE UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION forge_touch_updated_at();

-- Everything that happened to a row, in order: state changes, attempts, the worker's progress records, its log
-- lines, checkpoints, artifacts and errors. `seq` counts from 1 per row without gaps: the writer takes it from
-- `jobs.last_event_seq` in the same transaction, under the row lock, so watchers resume after the last seq
-- they saw and never miss or repeat one.
CREATE TABLE job_events (
    job_id      text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq         bigint NOT NULL CHECK (seq > 0),
    type        text NOT NULL CHECK (type IN ('state', 'progress', 'log', 'checkpoint', 'artifact', 'error',
                                              'attempt')),
    state       text NOT NULL,              -- the row's state after the event
    message     text NOT NULL DEFAULT '',
    progress    double precision NOT NULL DEFAULT 0,
    epoch       integer NOT NULL DEFAULT 0,
    step        bigint NOT NULL DEFAULT 0,
    loss        double precision,
    eval_loss   double precision,
    artifact    text NOT NULL DEFAULT '',
    data        jsonb NOT NULL DEFAULT '{}',   -- the worker's record as it printed it
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

-- Deletes stay possible (a row's events go with it); forge_refuse_update comes from 0001.
CREATE TRIGGER job_events_append_only BEFORE UPDATE ON job_events
    FOR EACH ROW EXECUTE FUNCTION forge_refuse_update();
