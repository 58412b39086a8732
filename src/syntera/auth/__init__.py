"""Sign-up, sign-in and sessions: a GoTrue-compatible server at /auth/v1."""
