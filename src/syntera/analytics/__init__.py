"""Analytics events: an append-only record of what happened, per company."""
