"""glance.wsgi.api:application, with SQLite write transactions serialized.

oslo.db opens every transaction with a deferred BEGIN, and glance reads the image
row and then updates it inside one transaction. With concurrent requests the
read->write upgrade fails at once with 'database is locked' (SQLITE_BUSY_SNAPSHOT in
WAL mode), and busy_timeout does not help. BEGIN IMMEDIATE takes the write lock up
front, so concurrent writers wait (busy_timeout) instead of failing.
Not used for keystone: its nested sessions would deadlock on BEGIN IMMEDIATE.
"""
import sqlalchemy
from sqlalchemy.engine import Engine


@sqlalchemy.event.listens_for(Engine, "connect")
def _busy_timeout(dbapi_con, _record):
    if type(dbapi_con).__module__ == "sqlite3":
        dbapi_con.execute("PRAGMA busy_timeout = 60000")


@sqlalchemy.event.listens_for(Engine, "before_cursor_execute", retval=True)
def _begin_immediate(conn, cursor, statement, params, context, executemany):
    if statement == "BEGIN" and conn.dialect.name == "sqlite":
        statement = "BEGIN IMMEDIATE"
    return statement, params


from glance.wsgi.api import application  # noqa: E402,F401
