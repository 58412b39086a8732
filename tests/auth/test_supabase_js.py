"""The official JavaScript client, ``@supabase/supabase-js`` from npm, run by node against
the API unchanged: sign up, sign in, change the password, sign in again (the client is
installed by the ``supabase_js`` fixture of ``tests.api_fixtures``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.auth.conftest import PASSWORD, AuthServer, new_email
from tests.auth.test_auth_api import supabase_style_token
from tests.conftest import TEST_JWT_SECRET


def test_supabase_js_signs_up_signs_in_changes_the_password_and_signs_in_again(
    auth_server: AuthServer, supabase_js: Path
) -> None:
    email = new_email()
    anon_key = supabase_style_token(TEST_JWT_SECRET, role="anon")
    node = shutil.which("node")
    assert node is not None
    ran = subprocess.run(
        [node, "e2e.mjs", auth_server.url, anon_key, email, PASSWORD, "a changed passphrase"],
        cwd=supabase_js, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["signedUp"] == result["signedIn"] == result["fetched"]
    assert result["email"] == email
    assert result["oldPasswordError"] == "invalid_credentials"
