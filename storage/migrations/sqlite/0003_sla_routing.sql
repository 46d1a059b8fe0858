-- The reading workflow's clocks and routing (issue: the reading worklist).
-- SLA: each item carries its turnaround deadline, set from its pool's target for its
-- priority when it arrives; a breach is recorded once. Claims are leases that expire.
ALTER TABLE worklist_items ADD COLUMN deadline_at BIGINT;
ALTER TABLE worklist_items ADD COLUMN breached_at BIGINT;
ALTER TABLE worklist_items ADD COLUMN lease_expires_at BIGINT;
ALTER TABLE worklist_items ADD COLUMN routing_version BIGINT;
ALTER TABLE worklist_items ADD COLUMN preferred_reader BIGINT REFERENCES users(id);
ALTER TABLE worklist_items ADD COLUMN rejected_reason TEXT;
ALTER TABLE worklist_items ADD COLUMN rejected_note TEXT;
ALTER TABLE worklist_items ADD COLUMN rejected_at BIGINT;
CREATE INDEX worklist_items_open ON worklist_items(state, deadline_at);

-- Turnaround targets per pool and priority (minutes); absent rows use the defaults
-- (STAT 30, urgent 120, routine 1440).
CREATE TABLE sla_targets (
    pool_id   BIGINT NOT NULL REFERENCES pools(id),
    priority  BIGINT NOT NULL,
    minutes   BIGINT NOT NULL,
    PRIMARY KEY (pool_id, priority)
);

-- Readers' qualifications: senior readers sign off juniors' reports; supervisors get
-- the pool's alerts.
ALTER TABLE users ADD COLUMN seniority TEXT NOT NULL DEFAULT 'junior';
ALTER TABLE users ADD COLUMN supervisor BIGINT NOT NULL DEFAULT 0;

-- Routing rules are versioned as whole, ordered rule sets (JSON): a change is a new
-- version, every routed item records the version (and rule) that sent it where.
CREATE TABLE routing_rulesets (
    version     INTEGER PRIMARY KEY AUTOINCREMENT,
    rules_json  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);

-- Alerts for people: a pool's supervisors (SLA breach, unroutable study, unacknowledged
-- critical result) or a site (critical result, quality rejection).
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    pool_id         BIGINT REFERENCES pools(id),
    site_id         BIGINT REFERENCES sites(id),
    item_id         BIGINT REFERENCES worklist_items(id),
    message         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    acknowledged_by BIGINT REFERENCES users(id),
    acknowledged_at BIGINT
);
CREATE INDEX alerts_pool ON alerts(pool_id, acknowledged_at);
CREATE INDEX alerts_site ON alerts(site_id, acknowledged_at);
