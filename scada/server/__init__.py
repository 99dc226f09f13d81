"""Serving the app: uvicorn, its one adapter (everything that touches its internals), the Host
guard and TCP progress checks."""
