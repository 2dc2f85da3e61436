"""Bus plumbing: JetStream declarations, the outbox relay and idempotent in-order consumers.

This package is the adapter for NATS (nats-py and FastStream's NATS broker).
"""
