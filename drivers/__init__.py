"""Device drivers: one interface (connect, read, close), registered by name."""
