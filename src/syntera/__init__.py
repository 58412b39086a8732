"""Syntera: the multi-tenant data platform behind conversational-AI agents."""

__version__ = "0.1.0"
