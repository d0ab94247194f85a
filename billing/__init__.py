"""VEE and billing: numba kernels that validate, estimate and aggregate register reads (billing.vee,
billing.kernels), EVN tariffs as dated data (billing.tariff_book, billing/tariffs/*.toml), integer-VND charges
(billing.charges), determinants and bills (billing.pricing), billing periods and cycles (billing.cycles), billing
runs from the database to exports (billing.run; `amr bill run`)."""
