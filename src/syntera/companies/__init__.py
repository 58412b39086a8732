"""Companies (the tenants) and their teams."""
