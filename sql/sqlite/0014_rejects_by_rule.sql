-- Rejected rows in the read API's order within a rule (issue 11): `GET /api/rejects?rule=X`
-- lists a rule's rows by file and line from a cursor. With an index on `rule` alone,
-- each page sorted every row of the rule after its position (2.4 s a page for a rule
-- of 900,000 rows, see docs/BENCHMARKS.md); this one is walked in that order and a page
-- reads only its own rows. It serves every `rule = ?` lookup the old index served, so
-- that one goes. Built from the table once (a few seconds a million rows).
CREATE INDEX rejected_rows_rule_file_line ON rejected_rows (rule, file_id, line_no);
DROP INDEX rejected_rows_rule;
