"""Faults: break links between services and the processes themselves; check what was lost."""
