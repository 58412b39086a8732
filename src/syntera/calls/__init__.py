"""Voice calls: recordings and the call log."""
