"""Workflows: a trigger, a graph of nodes, and the audit trail of their runs."""
