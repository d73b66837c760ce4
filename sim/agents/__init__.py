"""Agents of the simulated world: prosumers, device physics, aggregators, DSOs, BRPs, market operators."""
