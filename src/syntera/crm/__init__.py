"""CRM: contacts and deals."""
