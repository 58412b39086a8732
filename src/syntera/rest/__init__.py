"""The data API, ``/rest/v1``: PostgREST's grammar over the exposed schemas, so that
Supabase's clients (supabase-js, postgrest-py) work unchanged.

Built from a schema cache read from ``pg_catalog`` (``schema``), never from our own
tables; requests are parsed (``grammar``) into the types of ``grammar``, turned into one
SQL statement (``query``), and run in one round trip as the caller (``handler``), row-level
security deciding. It knows no domain, as ``syntera.api`` does not.
"""
