"""Django's ``bulk_create`` on PostgreSQL (psycopg 3), in a process of its own.

    python bench/harness/django_bulk.py --url postgresql://postgres@127.0.0.1:5432/baserepo_bench

Run by ``bench/harness/harness.py``, which keeps it alive for the whole run so that Django starts
once: it reads one JSON request per line on stdin, ``{"rows": 10000, "tag": "s10000r0"}``,
builds those rows exactly as the harness does (``alternatives.data.generate_rows``), recreates
its own table ``bench_django_users`` (untimed), times ``Model.objects.bulk_create`` inside
``transaction.atomic()`` from the list of dicts to the commit, checks the table, and answers
one JSON line on stdout: ``{"seconds": ..., "written": ..., "distinct_ids": ...,
"ids_match": ..., "count": ...}``.
Django is configured here in code; nothing else is needed.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import generate_rows
from django.conf import settings

TABLE = "bench_django_users"


def configure(url: str) -> None:
    parts = urlsplit(url)
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",  # psycopg 3 when installed
                "NAME": parts.path.lstrip("/"),
                "USER": parts.username or "postgres",
                "PASSWORD": parts.password or "",
                "HOST": parts.hostname or "127.0.0.1",
                "PORT": parts.port or 5432,
                "CONN_MAX_AGE": None,
            }
        },
        INSTALLED_APPS=[],
        USE_TZ=False,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()


def make_model() -> Any:
    from django.db import models

    class DjangoUser(models.Model):
        name = models.CharField(max_length=100)
        email = models.CharField(max_length=255, unique=True)
        department = models.CharField(max_length=50, null=True)
        salary = models.IntegerField(null=True)
        is_active = models.BooleanField(default=True)
        created_at = models.DateTimeField()

        class Meta:
            app_label = "bench"
            db_table = TABLE

    return DjangoUser


def fresh_table(model: Any) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    with connection.schema_editor() as editor:
        editor.create_model(model)


def measure(model: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from django.db import connection, transaction

    fresh_table(model)
    connection.ensure_connection()
    gc.collect()
    start = time.perf_counter()
    with transaction.atomic():
        created = model.objects.bulk_create([model(**r) for r in rows])
    seconds = time.perf_counter() - start
    # Untimed checks: every object got an id, and the id is its own row's.
    stored = dict(model.objects.values_list("id", "email"))
    return {
        "seconds": seconds,
        "written": len(created),
        "distinct_ids": len({o.pk for o in created if o.pk is not None}),
        "ids_match": all(stored.get(o.pk) == o.email for o in created),
        "first_email": created[0].email if created else None,
        "count": len(stored),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="postgresql://user@host:port/database")
    args = parser.parse_args(argv)
    configure(args.url)
    model = make_model()
    print(json.dumps({"ready": django.get_version()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("stop"):
            break
        answer = measure(model, generate_rows(request["rows"], request["tag"]))
        print(json.dumps(answer), flush=True)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
