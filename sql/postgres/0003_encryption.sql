-- Encryption at rest (crypt.rs): the id of the master key wrapping the object's data
-- key, and the wrapped data key itself (base64; useless without the master key).
-- NULL key_id: the raw object is stored in clear. `rotate-key` rewrites these two
-- columns only; the objects are never rewritten.
ALTER TABLE files ADD COLUMN IF NOT EXISTS key_id TEXT;
ALTER TABLE files ADD COLUMN IF NOT EXISTS wrapped_key TEXT;
