"""What people run: the `scada` CLI, the terminal watch, the Python client, the benchmarks and
the local cluster."""
