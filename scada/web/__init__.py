"""The HTTP layer: REST routes by resource, pages, metrics and the heavy-read limiter."""
