"""Audit: the hash chain of every stream, its verifier, and pure history queries
(ownership periods, state as of a moment, promise fates) over a customer's events."""
