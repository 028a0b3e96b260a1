"""Correlating a batch in memory decides exactly what correlating it alert by alert does."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from vigil.remediator.config import parse_config
from vigil.remediator.intelligence import repo as intel_repo
from vigil.remediator.matching import match_alert
from vigil.remediator.models import IncidentGroup, IncidentIntel
from vigil.remediator.payload import parse_payload
from vigil.remediator.store import Store

from tests.remediator.conftest import alert, notification


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    return str(request.getfixturevalue("pg_url")), str(request.getfixturevalue("pg_database_url"))


def workload(seed: int) -> list[list[dict[str, Any]]]:
    """Batches of alerts over a few services and instances, starting over 40 minutes."""
    rnd = random.Random(seed)
    batches = []
    n = 0
    for _ in range(12):
        batch = []
        for _ in range(rnd.randint(1, 25)):
            n += 1
            labels = {"job": rnd.choice(["shop", "cart", "db", ""]),
                      "instance": rnd.choice(["h1:80", "h2:80", "h3:80", "h4:80"])}
            minute = rnd.randint(0, 40)
            batch.append(alert(rnd.choice(["Down", "Slow", "Errors"]), f"{n:x}",
                               starts_at=f"2026-11-26T10:{minute:02d}:00Z", labels=labels))
        batches.append(batch)
    return batches


def correlate(url: str, batches: list[list[dict[str, Any]]]) -> dict[str, Any]:
    config = parse_config({"database_url": url, "procedures": [],
                           "intelligence": {"max_group_size": 4, "window": "5m"}})
    store = Store(url)
    try:
        store.migrate()
        repo = intel_repo.IntelRepo(store, config.intelligence)
        answers = []
        for k, batch in enumerate(batches):
            parsed = parse_payload(json.loads(json.dumps(notification(*batch))))
            (result,) = store.ingest([(parsed, [match_alert(config, a.as_dict())
                                                for a in parsed.alerts], False)])
            ids = result.escalate
            if k % 3 == 2:  # some groups stop being live: their incidents are fixed
                with store.engine.begin() as conn:
                    conn.execute(sa.text("UPDATE incidents SET state = 'resolved' "
                                         "WHERE id % 5 = 0"))
            answers.append(sorted(repo.assign_many([*ids, *ids[:2]]).items()))
        with store.engine.connect() as conn:
            groups = [(g.id, g.first_alert_at, g.last_alert_at, sorted(g.services),
                       {k: sorted(v) for k, v in g.shared.items()}, g.member_count,
                       g.root_incident_id)
                      for g in conn.execute(sa.select(IncidentGroup).order_by(IncidentGroup.id))]
            members = conn.execute(sa.select(IncidentIntel.incident_id, IncidentIntel.group_id,
                                             IncidentIntel.signature)
                                   .order_by(IncidentIntel.incident_id)).all()
        return {"answers": answers, "groups": groups, "members": [tuple(m) for m in members]}
    finally:
        store.dispose()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_grouping_equals_one_alert_at_a_time(urls: tuple[str, str], seed: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    batches = workload(seed)

    def no_fallback(*_: Any) -> None:
        raise AssertionError("a batch fell back to one alert at a time")

    with monkeypatch.context() as m:
        m.setattr(intel_repo.IntelRepo, "_assign", no_fallback)
        in_memory = correlate(urls[0], batches)
    monkeypatch.setattr(intel_repo, "BATCH_CANDIDATES", 0)  # every batch falls back
    one_by_one = correlate(urls[1], batches)
    assert in_memory["groups"], "the workload made no groups"
    assert any(g[5] == 4 for g in in_memory["groups"]), "no group filled up"
    assert in_memory == one_by_one
