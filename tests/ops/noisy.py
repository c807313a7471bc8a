"""A workflow and an activity that log every way TAflow code may (kept apart: sandbox-safe imports)."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import structlog


@activity.defn
async def noisy_activity(word: str) -> str:
    structlog.get_logger("taflow.test").info("structlog line", word=word)
    logging.getLogger("taflow.test").warning("stdlib line %s", word)
    activity.logger.info("sdk activity line")
    return word.upper()


@workflow.defn
class NoisyWorkflow:
    @workflow.run
    async def run(self, word: str) -> str:
        workflow.logger.info("workflow line about %s", word)
        result: str = await workflow.execute_activity(
            noisy_activity, word, start_to_close_timeout=timedelta(seconds=10)
        )
        return result
