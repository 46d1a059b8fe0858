-- Two-level sign-off, addenda and corrections, critical results and site webhooks.

-- A pool may require a senior's signature on reports its juniors write.
ALTER TABLE pools ADD COLUMN two_level_signoff BIGINT NOT NULL DEFAULT 0;

-- Report versions: draft -> preliminary -> final; a correction is a new version that
-- supersedes the final one in the same transaction (never two valid versions).
ALTER TABLE reports ADD COLUMN submitted_at BIGINT;
ALTER TABLE reports ADD COLUMN supersedes BIGINT REFERENCES reports(id);
ALTER TABLE reports ADD COLUMN superseded_at BIGINT;
ALTER TABLE reports ADD COLUMN returned_note TEXT;
ALTER TABLE reports ADD COLUMN correction_reason TEXT;

-- Addenda: appended to a final report, signed by their author when written.
CREATE TABLE report_addenda (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id   BIGINT NOT NULL REFERENCES reports(id),
    item_id     BIGINT NOT NULL REFERENCES worklist_items(id),
    text        TEXT NOT NULL,
    author_id   BIGINT NOT NULL REFERENCES users(id),
    signed_at   BIGINT NOT NULL
);
CREATE INDEX report_addenda_report ON report_addenda(report_id);

-- Critical results (危急值): the chain flagged -> notified -> acknowledged (-> escalated).
CREATE TABLE critical_results (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id          BIGINT NOT NULL REFERENCES worklist_items(id),
    site_id          BIGINT NOT NULL REFERENCES sites(id),
    pool_id          BIGINT NOT NULL REFERENCES pools(id),
    finding          TEXT NOT NULL,
    flagged_by       BIGINT NOT NULL REFERENCES users(id),
    flagged_at       BIGINT NOT NULL,
    notified_at      BIGINT,
    acknowledged_by  BIGINT REFERENCES users(id),
    acknowledged_at  BIGINT,
    escalated_at     BIGINT
);
CREATE INDEX critical_results_open ON critical_results(acknowledged_at, escalated_at);

-- A site's webhook for notifications, and the durable outbox that delivers to it (retried
-- with backoff; each attempt recorded).
ALTER TABLE sites ADD COLUMN webhook_url TEXT;
CREATE TABLE webhook_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id          BIGINT NOT NULL REFERENCES sites(id),
    url              TEXT NOT NULL,
    body             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    delivered_at     BIGINT,
    last_error       TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(delivered_at, next_attempt_at);

-- Claim-next and the queue page read a pool's ready items by priority then deadline.
CREATE INDEX worklist_items_next ON worklist_items(pool_id, state, priority, deadline_at, id);
