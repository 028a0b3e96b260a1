"""The demo target's data access, written as raw SQL by table name on purpose.

Vigil's code-reference scan reads this file: every table named here must exist.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

__all__ = ["ItemRepository"]


def _item(row: sa.Row[Any]) -> dict[str, Any]:
    data = dict(row._mapping)
    if isinstance(data.get("price"), Decimal):
        data["price"] = float(data["price"])
    return data


class ItemRepository:
    """Queries for items, users and orders."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def list_items(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name, price, stock FROM items ORDER BY id"))
            return [_item(r) for r in rows]

    def get_item(self, item_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT id, name, price, stock FROM items WHERE id = :id"),
                               {"id": item_id}).first()
            return _item(row) if row else None

    def create_item(self, name: str, price: float, stock: int) -> dict[str, Any]:
        with self.engine.begin() as conn:
            new_id = conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) + 1 FROM items")).scalar_one()
            conn.execute(sa.text("INSERT INTO items (id, name, price, stock) "
                                 "VALUES (:id, :name, :price, :stock)"),
                         {"id": new_id, "name": name, "price": price, "stock": stock})
        item = self.get_item(int(new_id))
        assert item is not None
        return item

    def update_item(self, item_id: int, fields: dict[str, Any]) -> dict[str, Any] | None:
        allowed = {k: v for k, v in fields.items() if k in ("name", "price", "stock")}
        if allowed:
            assignments = ", ".join(f"{k} = :{k}" for k in allowed)  # keys from a fixed set
            with self.engine.begin() as conn:
                conn.execute(sa.text(f"UPDATE items SET {assignments} WHERE id = :id"),
                             {**allowed, "id": item_id})
        return self.get_item(item_id)

    def delete_item(self, item_id: int) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(sa.text("DELETE FROM items WHERE id = :id"), {"id": item_id})
            return bool(result.rowcount)

    def list_users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, email, name FROM users ORDER BY id"))
            return [dict(r._mapping) for r in rows]

    def order_summary(self) -> list[dict[str, Any]]:
        query = sa.text(
            "WITH per_user AS (SELECT o.user_id, SUM(o.quantity) AS quantity "
            "FROM orders o JOIN items i ON i.id = o.item_id GROUP BY o.user_id) "
            "SELECT u.name, p.quantity FROM per_user p JOIN users u ON u.id = p.user_id "
            "ORDER BY u.name"
        )
        with self.engine.connect() as conn:
            return [{"name": r.name, "quantity": int(r.quantity)} for r in conn.execute(query)]
