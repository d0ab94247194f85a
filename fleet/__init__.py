"""Fleet generator: the meter registry of Hanoi (HN) and Ho Chi Minh City (HCM), one row per customer meter,
per power company, calibrated on the published rollout and deterministic from (scale, seed).

Interface (import the modules themselves: this package imports nothing, so ``fleet.calibration`` stays cheap for
the CLI's option defaults)::

    from fleet.counts import city_coverage_series, count_fleet
    from fleet.registry import build_fleet
    from fleet.store import write_fleet

    fleet = build_fleet(scale=0.01, seed=2017)      # numpy columns (fleet.registry.Fleet)
    run = write_fleet(conninfo_owner, fleet, replace=True, progress=lambda rows: ...)   # -> FleetRun
    counts = count_fleet(date(2017, 9, 15), scale=1.0, seed=2017)   # no database
    counts.cities["HN"].electronic, counts.cities["HN"].remote_share, counts.companies["PE0100"].customers
    days, customers, electronic, remote = city_coverage_series("HCM", scale=1.0)   # day-by-day city curves

CLI: ``amr fleet generate [--scale 1.0] [--seed 2017] [--replace]``, ``amr fleet counts [--as-of] [--by-company]``,
``amr fleet status [--as-of]``.

What the meters table holds after a run (columns of sql/001): connected_on (customer connected),
installed_on (electronic/smart meter installed; NULL and meter_kind 'mechanical' before), remote_since
(remote reading enabled; remote_read = remote_since IS NOT NULL), so a dashboard replays the rollout with
``count(*) FILTER (WHERE installed_on <= d)``. At scale 1.0 on 2017-09-15 the electronic and remote counts are
exactly the published ones (amr.rollout_figures) of 2,177,000 (HN) and 2,182,000 (HCM) customers; on 2023-05-31
the remote shares are the published ones; on the horizon (2025-06-30) HN has 2.90 M and HCM 2.64 M customers.
The generated meters are fleet_runs.first_meter_id .. last_meter_id (the active run has replaced_at NULL);
rollout_reference holds the published figures for reference lines.
"""
