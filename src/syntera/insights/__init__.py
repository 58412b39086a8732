"""Insights: what visitors mean and feel (intent, sentiment), conversations' summaries,
and the reports that measure the agents' work."""
