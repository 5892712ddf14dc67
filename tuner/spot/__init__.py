"""Spot capacity: the instance metadata endpoint, the preemption watcher, simulation."""
