"""The chat widget a company embeds on its site: public keys, visitor sessions, routes."""
