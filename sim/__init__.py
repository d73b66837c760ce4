"""The simulated world: SimPy owns time, Mesa the agent population, sources the data."""
