-- A billing or VEE run whose filters select no customer is recorded as 'empty', not 'released': nothing was
-- validated or billed, and no export files were written (billing.run.run_period).
ALTER TABLE billing_runs DROP CONSTRAINT billing_runs_status_check;
ALTER TABLE billing_runs ADD CONSTRAINT billing_runs_status_check
    CHECK (status IN ('running', 'released', 'held', 'overridden', 'failed', 'empty'));
