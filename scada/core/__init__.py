"""The core every other package builds on: config models, tag schema and quality, errors,
time formatting and statistics. It imports nothing of ours outside itself, so `drivers` and
`simulators` can depend on it without pulling in the service."""
