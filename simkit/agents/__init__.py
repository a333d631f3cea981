"""simkit/agents package."""
