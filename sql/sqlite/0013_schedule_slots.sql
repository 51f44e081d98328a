-- The slots of `bankpipe serve`'s schedule (issue 11): one row per (job, slot) that an
-- instance claimed, inserted before the job runs. The primary key decides which
-- instance runs a slot (INSERT ... ON CONFLICT DO NOTHING): exactly one, however many
-- instances share the warehouse. status: running (claimed, no outcome yet), ok, failed,
-- skipped (the job was still running from an earlier slot), interrupted (serve stopped,
-- or its instance died, before the job ended). Times are RFC 3339 UTC text like every
-- other time here. Numbered 0013: 0010-0012 belong to other work.
CREATE TABLE schedule_slots (
    job         TEXT NOT NULL,
    slot_at     TEXT NOT NULL,
    claimed_by  TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL
                CHECK (status IN ('running', 'ok', 'failed', 'skipped', 'interrupted')),
    error       TEXT,
    PRIMARY KEY (job, slot_at)
);
