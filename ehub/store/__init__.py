"""The hub store: durable state between pipeline stages (SQLAlchemy 2 + Alembic).

Public surface: :class:`~ehub.store.db.Store` and the table models in
:mod:`ehub.store.models`. SQLite by default, PostgreSQL by URL.
"""

from ehub.store.db import Store

__all__ = ["Store"]
