-- Stream groups: which collections a stream's row covers (a collection's own stream covers
-- itself; a `[streams.<name>]` group covers its members), so a membership change is detected at
-- start, and when a row stopped being used because its collections moved to another stream.
-- Retired rows are kept for the operator, never deleted.
ALTER TABLE {{checkpoints}} ADD COLUMN IF NOT EXISTS members text[];
ALTER TABLE {{checkpoints}} ADD COLUMN IF NOT EXISTS retired_at timestamptz;
