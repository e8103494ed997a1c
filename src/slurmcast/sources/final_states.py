"""Resolving how jobs ended, in batches, with accounting's health tracked: shared by the sources.

Both real sources ask Slurm accounting (``sacct`` or slurmdbd through
slurmrestd) for the jobs a poll saw finish or vanish, a batch of ids per
request, and neither may fail the poll when accounting is down: the jobs they
could not resolve are simply absent, and ``Accounting.error`` says why in
``describe()``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from slurmcast.core.records import JobRecord
from slurmcast.errors import SourceError
from slurmcast.sources.slurm.sacct import FinalState, apply_final_state

log = logging.getLogger("slurmcast.accounting")

Fetch = Callable[[Sequence[str]], Awaitable[Mapping[str, FinalState]]]
Correct = Callable[[FinalState, JobRecord], FinalState]


class Accounting:
    """Whether accounting answered last time, and why not."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.error: str | None = None

    async def resolve(
        self,
        jobs: Mapping[str, JobRecord],
        batch: int,
        fetch: Fetch,
        correct: Correct | None = None,
    ) -> dict[str, JobRecord]:
        """The last-seen records of ``jobs`` updated with how accounting says they ended.

        Args:
            jobs: last-seen records by raw job id.
            batch: ids per ``fetch``.
            fetch: asks accounting for a batch of ids.
            correct: adjusts a final state with what was seen of the job
                (a release's known accounting bug).

        Returns:
            The jobs accounting knows; on a failure, those resolved before it.
        """
        ids = sorted(jobs, key=_job_id_order)
        resolved: dict[str, JobRecord] = {}
        try:
            for start in range(0, len(ids), batch):
                chunk = ids[start : start + batch]
                finals = await fetch(chunk)
                for job_id in chunk:
                    final = finals.get(job_id)
                    if final is not None:
                        seen = jobs[job_id]
                        resolved[job_id] = apply_final_state(
                            seen, correct(final, seen) if correct else final
                        )
        except SourceError as exc:
            if self.error is None:
                log.warning("%s failed; final states are unconfirmed: %s", self.what, exc)
            self.error = exc.message
            return resolved
        if self.error is not None:
            log.info("%s works again", self.what)
            self.error = None
        return resolved


def _job_id_order(job_id: str) -> tuple[int, str]:
    head = job_id.split("_", 1)[0]
    return (int(head) if head.isdigit() else 0, job_id)
