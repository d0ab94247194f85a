"""The end-to-end demo: fleet, simulators of every protocol, collector, ingest, VEE and billing, dashboards."""
