-- Every node of a cluster writes its heartbeat here every few seconds (issue 16). A node
-- whose heartbeat is older than node_timeout_secs died: the node running the ticker ends the
-- transfers it was receiving, so their studies become ready after the quiet period instead
-- of waiting for the stall horizon. A clean stop removes the node's row.
CREATE TABLE node_heartbeats (
    node TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
