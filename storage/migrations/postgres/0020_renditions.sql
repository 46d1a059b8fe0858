-- Pre-rendered thumbnails and previews (issue 15): each new instance is rendered once in the
-- background after ingest (never on the acknowledgement path), and stored beside it in the
-- object store. NULL: not yet; instances from before this migration are rendered on first
-- request instead (0), so an upgrade does not start rendering a whole archive.
ALTER TABLE instances ADD COLUMN renditions_at BIGINT;
UPDATE instances SET renditions_at = 0;
CREATE INDEX instances_unrendered ON instances(id) WHERE renditions_at IS NULL;
