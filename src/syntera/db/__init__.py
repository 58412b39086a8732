"""Connections to the stores and the migrations; no domain knowledge lives here."""
