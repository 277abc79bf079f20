"""The core services: events, clock, breakers, retries, budget, immune system, store."""
