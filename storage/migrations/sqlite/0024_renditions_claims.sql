-- Pre-rendering spread over the nodes of a cluster (issue 16): a node claims a batch of
-- instances to render until this time (ms since the epoch); another node skips them, and
-- takes them over when the claim lapses (the claimer died).
ALTER TABLE instances ADD COLUMN renditions_claimed_until BIGINT;
