"""Purges: removing a deleted company from every store outside PostgreSQL."""
