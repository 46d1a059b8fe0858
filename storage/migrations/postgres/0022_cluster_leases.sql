-- Jobs that must run once per cluster, not once per node (issue 16): the SLA ticker, the
-- webhook outbox, pre-rendering. A node holds a job's lease while it renews it; a node that
-- dies (or stops) lets it lapse and another takes the job over.
CREATE TABLE cluster_leases (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
