"""Agents: archetypes, the agent loop, workflows, the workspace sandbox and QC."""
