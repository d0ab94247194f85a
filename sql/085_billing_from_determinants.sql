-- Billing from the continuous VEE's validated days (docs/vee.md): a bill run reads vee_daily, holds the customers
-- whose cycle is not bill-ready, records which determinant versions each bill used, and later differences are
-- billed as cancel-and-rebill pairs.

ALTER TABLE billing_runs DROP CONSTRAINT billing_runs_kind_check;
ALTER TABLE billing_runs ADD CONSTRAINT billing_runs_kind_check CHECK (kind IN ('vee', 'bill', 'rebill'));
ALTER TABLE billing_runs
    ADD COLUMN source text NOT NULL DEFAULT 'readings' CHECK (source IN ('readings', 'continuous')),
    -- The snapshot the determinants were read in (under the VEE pass lock: no pass commits during the read), so
    -- the version of every day a bill used is the greatest one made at or before it.
    ADD COLUMN data_as_of timestamptz,
    ADD COLUMN corrects_run_id bigint;             -- a rebill run: the released run whose bills it corrects

ALTER TABLE bills DROP CONSTRAINT bills_status_check;
ALTER TABLE bills ADD CONSTRAINT bills_status_check
    CHECK (status IN ('billed', 'no_data', 'no_tariff', 'held', 'cancelled'));
ALTER TABLE bills
    ADD COLUMN bill_kind text NOT NULL DEFAULT 'bill' CHECK (bill_kind IN ('bill', 'cancel', 'rebill')),
    ADD COLUMN hold_reasons text,                  -- why a held customer's cycle is not bill-ready
    -- Sum of the versions of the cycle's validated days (every channel) when billed: versions only grow, so a
    -- different sum later means the data under the bill changed.
    ADD COLUMN determinant_versions bigint,
    ADD COLUMN validated_days integer;
ALTER TABLE bills DROP CONSTRAINT bills_pkey;
ALTER TABLE bills ADD PRIMARY KEY (run_id, meter_id, bill_kind);

-- Billing reads the continuous VEE's results and takes its pass lock; it writes nothing there.
GRANT SELECT ON vee_daily, vee_episodes, vee_pending TO amr_billing;
