"""`scada bench`: fan-out and ingest benchmarks, with reference servers to compare against."""
