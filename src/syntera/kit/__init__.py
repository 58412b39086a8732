"""Shared building blocks of the domains: body schemas, pagination, tenant resources."""
