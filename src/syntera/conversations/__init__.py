"""Conversations and messages, kept in MongoDB; the public widget channel."""
