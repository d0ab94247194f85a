"""Tariff data files (TOML with effective dates), read by billing.tariff_book; no code here."""
