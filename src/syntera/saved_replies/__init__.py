"""Saved replies: text a teammate inserts in a reply by typing "/" and its shortcut."""
