-- Final versions (docs/vee.md): when a continuous bill run releases its bills, every estimated day (quality E, S
-- or V) a billed customer's cycle used becomes a new version of quality F (AEMO NEM12 final substitute), with the
-- same values and method, reason 'billed', made by 'bill-run <run_id>', in the transaction that stores the run's
-- bills (billing.bill_ready.FINALIZE_BILLED_ESTIMATES). A later version of such a day (late reads, an edit) is a
-- correction of that bill, never a silent change; the VEE service does not write a version of an F day whose
-- values it would estimate the same.

ALTER TABLE vee_daily_versions DROP CONSTRAINT vee_daily_versions_reason_check;
ALTER TABLE vee_daily_versions ADD CONSTRAINT vee_daily_versions_reason_check CHECK (reason IN
    ('first_pass', 'late_data', 're_estimate', 'revalidation', 'manual_edit', 'accept', 'undo', 'billed'));

-- The current estimated days, a few in a thousand of vee_daily: a bill run finds the ones its bills used through
-- this index instead of reading every day of every cycle. (A version that turns a day F or A leaves it.)
CREATE INDEX vee_daily_estimated ON vee_daily (meter_id, day) WHERE quality IN ('E', 'S', 'V');

-- No grant: the billing role already has SELECT, INSERT and UPDATE on vee_daily_versions and vee_daily
-- (sql/080) and UPDATE on bills (sql/010), which is all this takes. The data-quality aggregates (sql/090) count
-- the current days per quality code whatever the code: F days are counted as they are, no change there.
