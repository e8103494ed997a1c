"""Reading a server's ``GET /metrics`` in tests, with prometheus_client's own parser."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from slurmcast.app import SlurmcastApp


@dataclass(frozen=True)
class Scrape:
    """One scrape's samples (histograms as their _bucket, _count and _sum samples)."""

    samples: list[Sample]
    #: Family name -> its type ("counter", "gauge", "histogram", ...).
    types: dict[str, str]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample ``name`` with exactly ``labels`` (None: absent)."""
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None

    def get(self, name: str, **labels: str) -> float:
        """Like ``value``, but the sample must be there."""
        value = self.value(name, **labels)
        assert value is not None, f"no sample {name}{labels}"
        return value

    def named(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]

    @property
    def names(self) -> set[str]:
        return {s.name for s in self.samples}


def parse(text: str) -> Scrape:
    samples: list[Sample] = []
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        samples.extend(family.samples)
    return Scrape(samples, types)


async def scrape(app: SlurmcastApp, headers: dict[str, str] | None = None) -> Scrape:
    """``GET /metrics`` of ``app``; fails unless it answers 200 in the text format."""
    status, text = await get_metrics(app, headers)
    assert status == 200, (status, text)
    return parse(text)


async def get_metrics(app: SlurmcastApp, headers: dict[str, str] | None = None) -> tuple[int, str]:
    url = f"http://127.0.0.1:{app.http.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, await resp.text()
