-- Every job the relay queued, as it was last known: what was asked, by whom, and how it ended.
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,   -- ComfyUI's prompt id
    number        INTEGER NOT NULL,   -- ComfyUI's queue number
    device        TEXT NOT NULL,      -- the device that queued it
    created_at    INTEGER NOT NULL,   -- ms since the epoch
    finished_at   INTEGER,            -- ms since the epoch, once it ended
    state         TEXT NOT NULL,      -- queued, running, succeeded, failed, interrupted, lost
    workflow_name TEXT,               -- the saved workflow it ran, if one
    prompt        TEXT NOT NULL,      -- the POST /prompt body, JSON
    outputs       TEXT NOT NULL,      -- what it made, JSON
    error         TEXT                -- why it failed or was lost, JSON
) STRICT;

CREATE INDEX jobs_by_device ON jobs (device, created_at);
CREATE INDEX jobs_by_state ON jobs (state);

-- The relay's own lasting values (its ComfyUI client id).
CREATE TABLE relay (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
