"""AI agent configurations and their widget keys."""
