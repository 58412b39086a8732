"""Notifications: written by the system, read and dismissed by the user they are for."""
