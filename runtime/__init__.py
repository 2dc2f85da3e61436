"""Baton's shared runtime: the event-store port and its adapters, bus plumbing,
configuration and telemetry. Services import this; it never imports a service."""
