-- Failed logins (any path: the login form, HTTP Basic) by user name and client address,
-- and the accounts locked after too many of them. In the database, not in one process's
-- memory, so every node of a cluster applies the same throttle.
CREATE TABLE login_failures (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    username  TEXT NOT NULL,
    client    TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX login_failures_user ON login_failures(username, at);
CREATE INDEX login_failures_client ON login_failures(client, at);
CREATE TABLE login_locks (
    username  TEXT PRIMARY KEY,
    until     BIGINT NOT NULL
);
