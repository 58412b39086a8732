"""`syntera db orphans`: data whose company is gone, found and removed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
import redis
from bson import ObjectId
from pymongo import MongoClient

from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.factories import SeededCompany

pytestmark = pytest.mark.unscoped_mongo  # planting and checking by hand


def test_orphans_are_listed_then_deleted_and_live_companies_kept(
    api_urls: StackUrls, settings: Settings, tenant: SeededCompany
) -> None:
    gone = uuid.uuid4()
    live = tenant.company_id
    mongo: MongoClient = MongoClient(api_urls.mongodb_uri)  # type: ignore[type-arg]
    database = mongo[settings.mongodb_db]
    keys = redis.Redis.from_url(api_urls.redis_url)
    files = settings.data_dir / "kb-files"
    try:
        for company in (gone, live):
            conversation = ObjectId()
            database["conversations"].insert_one(
                {
                    "company_id": str(company),
                    "_id": conversation,
                    "planted": True,
                    "started_at": datetime.now(UTC),
                }
            )
            database["messages"].insert_many([
                {"company_id": str(company), "conversation_id": str(conversation),
                 "planted": True, "n": i}
                for i in range(3)
            ])  # fmt: skip
            folder = files / str(company) / str(uuid.uuid4())
            folder.mkdir(parents=True)
            (folder / "faq.txt").write_text("left behind")
            keys.set(f"t:{{{company}}}:planted:one", "x")
            keys.set(f"t:{{{company}}}:planted:two", "x")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
        env.update(api_urls.as_env(), COLUMNS="200")

        def syntera(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "syntera", "db", "orphans", *args,
                 "--data-dir", str(settings.data_dir)],
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        listed = syntera()
        lines = [line for line in listed.splitlines() if str(gone) in line]
        assert any("mongodb" in line and "4 documents" in line for line in lines), listed
        assert any("files" in line and "1 files" in line for line in lines), listed
        assert any("redis" in line and "2 keys" in line for line in lines), listed
        assert str(live) not in listed
        assert database["messages"].count_documents({"company_id": str(gone)}) == 3  # listing only

        syntera("--delete")
        for collection in ("conversations", "messages"):
            assert database[collection].count_documents({"company_id": str(gone)}) == 0
        assert not (files / str(gone)).exists()
        assert list(keys.scan_iter(match=f"t:{{{gone}}}:*")) == []
        assert database["messages"].count_documents({"company_id": str(live)}) >= 3
        assert (files / str(live)).exists()
        assert keys.exists(f"t:{{{live}}}:planted:one")
        assert str(gone) not in syntera()
    finally:
        for collection in ("conversations", "messages"):
            database[collection].delete_many({"company_id": str(live), "planted": True})
        keys.delete(f"t:{{{live}}}:planted:one", f"t:{{{live}}}:planted:two")
        mongo.close()
        keys.close()
