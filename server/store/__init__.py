"""PostgreSQL storage: the connection pool, migrations, the embedded cluster and the SQL."""
