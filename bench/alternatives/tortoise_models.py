"""Tortoise ORM's model of ``bench_users`` (the table is created by SQLAlchemy)."""

from tortoise import fields
from tortoise.models import Model


class TortoiseUser(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100)
    email = fields.CharField(max_length=255, unique=True)
    department = fields.CharField(max_length=50, null=True)
    salary = fields.IntField(null=True)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "bench_users"
