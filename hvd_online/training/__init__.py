"""The online training loop (a generator of step reports), the reports, freshness."""
