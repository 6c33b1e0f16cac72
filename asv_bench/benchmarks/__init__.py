"""asv benchmarks of sparseopt, one module per area (see asv_bench/asv.conf.json)."""
