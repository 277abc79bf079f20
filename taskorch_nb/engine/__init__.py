"""The engine: the Orchestrator (composition root), runs, their execution and persistence."""
