"""`syntera up --demo`: a company to look at, made once (a rerun finds it and does nothing)."""

from __future__ import annotations

from typing import Any

import psycopg
from argon2 import PasswordHasher
from psycopg.types.json import Jsonb

DEMO_EMAIL = "demo@syntera.local"
DEMO_PASSWORD = "demo-password"  # noqa: S105 (printed to whoever runs --demo)

CONTACTS = [
    ("ada@example.com", "Ada", "Lovelace", ["vip"]),
    ("alan@example.com", "Alan", "Turing", ["lead"]),
    ("grace@example.com", "Grace", "Hopper", ["customer"]),
]


def seed_demo(owner_url: str) -> bool:
    """Create the demo user, company, agent, contacts and deals; False if they exist."""
    with psycopg.connect(owner_url) as conn:
        if conn.execute("SELECT 1 FROM auth.users WHERE email = %s", (DEMO_EMAIL,)).fetchone():
            return False
        user = _one(conn, """
            INSERT INTO auth.users (aud, role, email, encrypted_password, email_confirmed_at,
                                    raw_app_meta_data)
            VALUES ('authenticated', 'authenticated', %s, %s, now(), %s) RETURNING id
        """, (DEMO_EMAIL, PasswordHasher().hash(DEMO_PASSWORD),
              Jsonb({"provider": "email", "providers": ["email"]})))  # fmt: skip
        company = _one(conn, "INSERT INTO companies (name, owner_id) VALUES"
                             " ('Demo Company', %s) RETURNING id", (user,))  # fmt: skip
        _one(conn, "INSERT INTO agent_configs (company_id, name, system_prompt)"
                   " VALUES (%s, 'Support', 'Answer briefly and kindly.') RETURNING id",
             (company,))  # fmt: skip
        for email, first, last, tags in CONTACTS:
            contact = _one(conn, "INSERT INTO contacts (company_id, email, first_name,"
                                 " last_name, tags) VALUES (%s, %s, %s, %s, %s) RETURNING id",
                           (company, email, first, last, tags))  # fmt: skip
            conn.execute("INSERT INTO deals (company_id, contact_id, title, value, stage)"
                         " VALUES (%s, %s, %s, 1000, 'qualified')",
                         (company, contact, f"{first}'s renewal"))  # fmt: skip
    return True


def _one(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]
