"""`cti customers import FILE` against a real redis-server: good rows in,
bad rows reported with row, field and reason, exit 1 when any was refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.servers import redis_server
from tests.stack import ROOT

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]


def test_import_loads_good_rows_and_reports_the_bad_ones(tmp_path: Path) -> None:
    data = tmp_path / "customers.csv"
    data.write_text("id,name,phones,tier\nc1,Ann Lee,+33612340001,vip\n"
                    "c2,,+33612340002,standard\nc3,Bo Ng,not-a-number,standard\n",
                    encoding="utf-8")
    with redis_server(tmp_path) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
        env.update({"PYTHONPATH": ROOT, "CTI_REDIS_URL": url})
        done = subprocess.run([sys.executable, "-m", "cti", "customers", "import", str(data)],
                              env=env, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 1, done.stderr
        assert "3 rows read, 1 imported, 2 rejected" in done.stdout
        assert "row 3 (c2): name" in done.stderr
        assert "row 4 (c3): phones.0" in done.stderr
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            assert client.hget("cti:customers:by-phone", "+33612340001") == "c1"
            assert not client.exists("cti:customer:c2", "cti:customer:c3")
        finally:
            client.close()
