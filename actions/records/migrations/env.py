from alembic import context

from actions.records.db import database_url, make_sync_engine
from actions.records.models import Base

config = context.config
url = config.attributes.get("database_url") or database_url()

if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run against a database")

engine = make_sync_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
