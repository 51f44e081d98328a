-- Rows per matched date/time format, per file and field (issue 9): a profile may list
-- several formats for a column, and a file whose dates silently switch layout shows it
-- here (`bankpipe files --json`, `formats`). Numbered 0009: 0005-0008 and 0010 belong to
-- other work. Replaced with the file's warnings on every (re)load.
CREATE TABLE file_formats (
    file_id  INTEGER NOT NULL REFERENCES files (file_id),
    field    TEXT NOT NULL,
    format   TEXT NOT NULL,
    rows     INTEGER NOT NULL,
    PRIMARY KEY (file_id, field, format)
);
