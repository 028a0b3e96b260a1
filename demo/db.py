"""The demo target's database: three tables, a bounded connection pool, seed data."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

from vigil.db import create_engine

__all__ = ["create_and_seed", "items", "make_engine", "metadata", "orders", "users"]

metadata = sa.MetaData()

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(255), nullable=False, unique=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("created_at", sa.DateTime, server_default=sa.func.now(), nullable=False),
)

items = sa.Table(
    "items", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("price", sa.Numeric(10, 2), nullable=False),
    sa.Column("stock", sa.Integer, nullable=False, server_default="0"),
)

orders = sa.Table(
    "orders", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False, index=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, server_default=sa.func.now(), nullable=False),
)


def make_engine(url: str, pool_size: int) -> sa.Engine:
    """An engine with a fixed-size pool and a short checkout timeout, so exhaustion shows fast."""
    return create_engine(url, poolclass=QueuePool, pool_size=pool_size, max_overflow=0,
                            pool_timeout=1.0, pool_pre_ping=False)


def create_and_seed(engine: sa.Engine) -> None:
    """Create the tables if missing and insert a few rows into empty ones."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one() == 0:
            conn.execute(users.insert(), [
                {"id": 1, "email": "ada@example.com", "name": "Ada"},
                {"id": 2, "email": "grace@example.com", "name": "Grace"},
            ])
            conn.execute(items.insert(), [
                {"id": 1, "name": "widget", "price": 9.99, "stock": 10},
                {"id": 2, "name": "gadget", "price": 24.50, "stock": 3},
            ])
            conn.execute(orders.insert(), [{"user_id": 1, "item_id": 2, "quantity": 1}])
