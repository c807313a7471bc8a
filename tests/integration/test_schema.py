from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_migrations_create_the_read_model_and_trigram_extension(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        tables = set(
            (await conn.execute(text("select tablename from pg_tables where schemaname='public'"))).scalars()
        )
        ext = (await conn.execute(text("select extname from pg_extension where extname='pg_trgm'"))).scalar()
    assert {"requests", "request_events", "experts", "programmes", "meetings", "api_keys", "outbox"} <= tables
    assert ext == "pg_trgm"


async def test_models_and_migrations_agree(engine: AsyncEngine) -> None:
    """Every model change comes with an Alembic revision: autogenerate finds nothing left to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from taflow.db.models import Base

    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert diff == []


async def test_request_titles_keep_fine_statistics(engine: AsyncEngine) -> None:
    """Title searches are planned on the trigram index only with the finer histogram (migration 0007,
    figure 4 of benchmarks/RESULTS.md shows the difference)."""
    async with engine.connect() as conn:
        target = (
            await conn.execute(
                text(
                    "select attstattarget from pg_attribute "
                    "where attrelid = 'requests'::regclass and attname = 'title'"
                )
            )
        ).scalar()
    assert target == 1000  # TITLE_STATISTICS in 0007_title_statistics.py
