"""Observations of a running stack beyond its event log (resource samples)."""
