"""Hostile input against a real remediator process on PostgreSQL.

Property: a malformed notification gets a 4xx (never a 5xx, which would make Alertmanager
retry it forever), the process keeps serving, and nothing is written. Label values full of
shell, SQL and template metacharacters are stored verbatim and never reach a shell.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.helpers import (
    WEBHOOK_AUTH,
    RemediatorSpec,
    alert,
    notification,
    remediator_config,
    remediator_process,
    store_rows,
    table_counts,
)

MALFORMED_EXAMPLES = 400
COMPRESSED_EXAMPLES = 300
LABEL_EXAMPLES = 150
JSON_HEADERS = {**WEBHOOK_AUTH, "Content-Type": "application/json"}
APPEND = "import sys; open(sys.argv[1], 'a').write(repr(sys.argv[2:]) + '\\n')"
METACHARS = [";", "|", "&", "$(", "`", ">", "<", "'", '"', "\\", "${fingerprint}", "${svc}",
             "{{ .Labels }}", "{{7*7}}", "%s", "%n", "' OR 1=1 --", "'; DROP TABLE alerts; --",
             "$(touch /tmp/pwned)", "`id`", "\n", "\r\n", "*", "?", "~", "../../etc/passwd",
             "\u202e", "é", "😀", " "]

# --- strategies: each yields bytes that are NOT a valid notification -------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                                     allow_infinity=False) | st.text()
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return True
    return False


garbage = st.binary(max_size=2048).filter(_not_json)
wrong_top_level = json_values.filter(lambda v: not isinstance(v, dict)).map(_dumps)

# (path, value) replacements that make a notification invalid, whatever else it holds
FIELD_TYPES: dict[tuple[Any, ...], Any] = {
    ("version",): st.one_of(st.integers(), st.text().filter(lambda s: s != "4"), st.none()),
    ("status",): st.one_of(st.integers(), st.text().filter(lambda s: s not in ("firing", "resolved"))),
    ("receiver",): st.one_of(st.integers(), st.none(), st.lists(st.text(), max_size=2)),
    ("groupKey",): st.one_of(st.integers(), st.none(), st.booleans()),
    ("alerts",): st.one_of(st.integers(), st.text(), st.none(), st.dictionaries(st.text(), st.text())),
    ("alerts", 0): st.one_of(st.integers(), st.text(), st.none(), st.lists(st.integers())),
    ("alerts", 0, "status"): st.one_of(st.integers(), st.text().filter(
        lambda s: s not in ("firing", "resolved"))),
    ("alerts", 0, "fingerprint"): st.one_of(st.integers(), st.none(),
                                           st.text().filter(lambda s: not s or not all(
                                               c in "0123456789abcdefABCDEF" for c in s) or len(s) > 64)),
    ("alerts", 0, "labels"): st.one_of(st.integers(), st.text(), st.lists(st.text()),
                                      st.dictionaries(st.text(), st.integers() | st.none(), min_size=1)),
    ("alerts", 0, "labels", "alertname"): st.one_of(st.integers(), st.none(), st.just("")),
    ("alerts", 0, "annotations"): st.one_of(st.integers(), st.text(), st.dictionaries(
        st.text(), st.integers() | st.lists(st.text()), min_size=1)),
    ("alerts", 0, "startsAt"): st.one_of(st.integers(), st.none(), st.text(max_size=40)),
    ("alerts", 0, "endsAt"): st.one_of(st.integers(), st.text(min_size=1, max_size=40)),
    ("alerts", 0, "generatorURL"): st.one_of(st.integers(), st.lists(st.text(), max_size=2)),
}


def _is_rfc3339(s: str) -> bool:
    from vigil.remediator.payload import PayloadError, parse_time

    try:
        parse_time(s, "x")
    except (PayloadError, OverflowError):
        return False
    return True


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@st.composite
def wrong_field(draw: st.DrawFn) -> bytes:
    path = draw(st.sampled_from(sorted(FIELD_TYPES, key=str)))
    value = draw(FIELD_TYPES[path])
    if path[-1] in ("startsAt", "endsAt") and isinstance(value, str) and (
            _is_rfc3339(value) or (path[-1] == "endsAt" and value == "")):
        value = 12
    return _dumps(_set(notification(alert("Hostile", "ab")), path, value))


# valid in shape, invalid in value: these overflow or do not exist
bad_timestamps = st.one_of(
    st.builds(lambda h, m: f"9999-12-31T23:59:59-{h:02d}:{m:02d}", st.integers(1, 23), st.integers(0, 59)),
    st.builds(lambda h, m: f"0001-01-01T00:00:00+{h:02d}:{m:02d}", st.integers(1, 23), st.integers(0, 59)),
    st.builds(lambda y, mo, d: f"{y:04d}-{mo:02d}-{d:02d}T00:00:00Z", st.integers(0, 9999),
              st.sampled_from([0, 13, 99]), st.integers(1, 28)),
    st.builds(lambda d: f"2026-02-{d:02d}T00:00:00Z", st.integers(30, 99)),
    st.builds(lambda h: f"2026-01-01T{h:02d}:00:00Z", st.integers(24, 99)),
    st.builds(lambda h: f"2026-01-01T00:00:00+{h:02d}:00", st.integers(24, 99)),
    st.text(max_size=40).filter(lambda s: not _is_rfc3339(s)),
)


@st.composite
def bad_timestamp(draw: st.DrawFn) -> bytes:
    field = draw(st.sampled_from(["startsAt", "endsAt"]))
    ts = draw(bad_timestamps)
    if field == "endsAt" and ts == "":
        ts = "not a time"
    a = alert("Hostile", "ab")
    a[field] = ts
    return _dumps(notification(a))


@st.composite
def deeply_nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(2_000, 200_000))
    kind = draw(st.sampled_from(["list", "object", "in-payload"]))
    if kind == "list":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    doc = _dumps(notification(alert("Hostile", "ab")))
    return doc[:-1] + b', "extra": ' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def invalid_utf8(draw: st.DrawFn) -> bytes:
    bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                                b"\xc0\xaf", b"\xe2\x82"]))
    doc = _dumps(notification(alert("Hostile", "ab", labels={"svc": "XXXX"})))
    return doc.replace(b"XXXX", b"ab" + bad + b"cd")


@st.composite
def unstorable_strings(draw: st.DrawFn) -> bytes:
    """Strings JSON can carry but no text column can: NUL, lone surrogates; and NaN/Infinity."""
    poison = draw(st.sampled_from(["\u0000", "\ud800", "\udfff", "a\u0000b"]))
    where = draw(st.sampled_from(["label", "annotation", "alertname", "groupKey", "receiver",
                                  "commonLabels", "nan"]))
    doc = notification(alert("Hostile", "ab"))
    if where == "nan":
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return _dumps(doc)[:-1] + f', "extra": {token}}}'.encode()
    if where == "label":
        doc["alerts"][0]["labels"]["svc"] = poison
    elif where == "annotation":
        doc["alerts"][0]["annotations"]["summary"] = poison
    elif where == "alertname":
        doc["alerts"][0]["labels"]["alertname"] = "Hostile" + poison
    elif where == "commonLabels":
        doc["commonLabels"] = {"x": poison}
    else:
        doc[where] = poison
    return _dumps(doc)


huge_numbers = st.integers(4_400, 20_000).map(
    lambda n: _dumps(notification(alert("Hostile", "ab")))[:-1] + b', "extra": ' + b"9" * n + b"}")
overlong = st.sampled_from(["receiver", "alertname"]).map(lambda where: _dumps(
    _set(notification(alert("Hostile", "ab")),
         ("receiver",) if where == "receiver" else ("alerts", 0, "labels", "alertname"), "R" * 300)))

MALFORMED = st.one_of(garbage, wrong_top_level, wrong_field(), bad_timestamp(), deeply_nested(),
                      invalid_utf8(), unstorable_strings(), huge_numbers, overlong)


# --- the service under test -----------------------------------------------------------------

def hostile_procedures(tmp_path: Path) -> list[dict[str, Any]]:
    run_log = str(tmp_path / "ran.log")
    return [
        # strict pattern: a hostile value is refused before anything runs
        {"name": "strict", "match": ['alertname="Hostile"'], "cooldown": 0,
         "params": {"svc": {"label": "svc", "pattern": "[a-z]{1,20}"}},
         "steps": [{"action": "command", "argv": [sys.executable, "-c", APPEND, run_log, "strict", "${svc}"]}]},
        # permissive pattern: the value reaches the step, as ONE argv element, never a shell
        {"name": "permissive", "match": ['alertname="HostileAnything"'], "cooldown": 0,
         "max_concurrent": 4, "params": {"svc": {"label": "svc", "pattern": "(?s).{1,400}"}},
         "target": "${fingerprint}",
         "steps": [{"action": "command", "argv": [sys.executable, "-c", APPEND, run_log, "permissive",
                                                  "${svc}"]}]},
    ]


@pytest.fixture
def remediator(tmp_path: Path, pg_url: str, start_process: Any) -> Iterator[RemediatorSpec]:
    spec = remediator_config(tmp_path, pg_url, "hostile", hostile_procedures(tmp_path))
    start_process(remediator_process(spec, tmp_path))
    yield spec


BUGS = "/tmp/vigil-handoff/issue10-bugs.md"


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """One keep-alive session for many cases, closed after the test (no leaked sockets)."""
    with requests.Session() as s:
        yield s


def test_malformed_webhook_bodies_get_4xx_and_change_nothing(remediator: RemediatorSpec, pg_url: str,
                                                              session: requests.Session) -> None:
    before = table_counts(pg_url)
    url = f"{remediator.url}/api/v1/alerts"
    seen: list[tuple[int, bytes]] = []

    @settings(max_examples=MALFORMED_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=MALFORMED)
    def check(body: bytes) -> None:
        resp = session.post(url, data=body, headers=JSON_HEADERS, timeout=30)
        seen.append((resp.status_code, body[:200]))
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:200], body[:200])

    check()
    # the rest of the hostile matrix, once each: size, media type, method
    extra = [
        session.post(url, data=b"[" + b"1," * (1 << 20) + b"1]", headers=JSON_HEADERS, timeout=30),
        session.post(url, data=_dumps(notification(alert("Hostile", "ab"))),
                     headers={**WEBHOOK_AUTH, "Content-Type": "text/plain"}, timeout=30),
        session.post(url, data=b"", headers=JSON_HEADERS, timeout=30),
    ]
    assert [r.status_code for r in extra] == [413, 415, 400]
    print(f"\nhypothesis: {len(seen)} malformed notifications, all answered 4xx")
    assert len(seen) >= MALFORMED_EXAMPLES // 2
    assert requests.get(f"{remediator.url}/-/healthy", timeout=5).status_code == 200
    assert table_counts(pg_url) == before, "a rejected notification changed the store"


label_values = st.lists(st.sampled_from(METACHARS) | st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=10),
    min_size=1, max_size=6).map("".join).filter(lambda s: 0 < len(s) <= 400)


def test_metacharacters_in_labels_are_stored_verbatim_and_never_reach_a_shell(
        remediator: RemediatorSpec, pg_url: str, tmp_path: Path, session: requests.Session) -> None:
    url = f"{remediator.url}/api/v1/alerts"
    sent: dict[str, tuple[str, str]] = {}  # fingerprint -> (alertname, value)
    counter = iter(range(1, 1 << 30))

    @settings(max_examples=LABEL_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(value=label_values, permissive=st.booleans())
    def check(value: str, permissive: bool) -> None:
        fp = f"{next(counter):x}"
        name = "HostileAnything" if permissive else "Hostile"
        body = notification(alert(name, fp, labels={"svc": value},
                                  starts_at="2026-11-26T10:00:00Z"))
        body["alerts"][0]["annotations"] = {"description": value}
        resp = session.post(url, json=body, headers=WEBHOOK_AUTH, timeout=30)
        assert resp.status_code == 200, (resp.status_code, resp.text[:300])
        sent[fp] = (name, value)

    check()
    print(f"\nhypothesis: {len(sent)} notifications with metacharacter label values")
    rows = store_rows(pg_url, "SELECT a.fingerprint, a.labels, a.annotations, i.state, i.reason, "
                              "i.procedure FROM alerts a JOIN incidents i ON i.alert_id = a.id")
    assert len(rows) == len(sent)
    for row in rows:
        name, value = sent[row["fingerprint"]]
        assert row["labels"]["svc"] == value and row["annotations"]["description"] == value
        if name == "Hostile" and not (value.isascii() and value.isalpha() and value.islower()
                                      and len(value) <= 20):
            assert row["state"] == "escalated" and row["reason"].startswith("refused"), row
            assert value not in row["reason"]  # the refusal names the parameter, not the value

    # every permissive run received the value as one argv element, byte for byte
    from tests.harness import wait_for

    expected = sorted(repr(["permissive", v]) for n, v in sent.values() if n == "HostileAnything")
    ran_log = tmp_path / "ran.log"

    def runs() -> list[str]:
        if not ran_log.exists():
            return []
        import ast

        entries = []
        text = ran_log.read_text()
        for line in text.splitlines():
            entries.append(repr(ast.literal_eval(line)))
        return sorted(entries)

    def permissive_runs() -> list[str] | None:
        got = [r for r in runs() if r.startswith("['permissive'")]
        return got if len(got) == len(expected) else None

    wait_for(permissive_runs, timeout=120, what="every permissive procedure run")
    assert sorted(r for r in runs() if r.startswith("['permissive'")) == expected
    strict_runs = [r for r in runs() if r.startswith("['strict'")]
    allowed = {repr(["strict", v]) for n, v in sent.values() if n == "Hostile"}
    assert set(strict_runs) <= allowed
    assert not Path("/tmp/pwned").exists()


def test_one_poison_notification_does_not_fail_its_batch(remediator: RemediatorSpec,
                                                          pg_url: str) -> None:
    """Group commit must not let one unstorable notification bounce the others with it."""
    url = f"{remediator.url}/api/v1/alerts"
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def post(key: str, body: bytes) -> None:
        resp = requests.post(url, data=body, headers=JSON_HEADERS, timeout=30)
        with lock:
            statuses[key] = resp.status_code

    for round_ in range(3):
        threads = []
        for i in range(40):
            fp = f"{round_:x}{i:04x}"
            threads.append(threading.Thread(target=post, args=(
                f"good-{fp}", _dumps(notification(alert("Unmatched", fp)))), daemon=True))
        poison = notification(alert("Unmatched", f"ee{round_:x}", labels={"svc": "a\u0000b"}))
        threads.insert(20, threading.Thread(target=post, args=(f"poison-{round_}", _dumps(poison)),
                                            daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    good = {k: v for k, v in statuses.items() if k.startswith("good-")}
    assert len(good) == 120
    assert set(good.values()) == {200}, {k: v for k, v in good.items() if v != 200}
    assert all(400 <= v < 500 for k, v in statuses.items() if k.startswith("poison-"))


# --- compressed bodies: corrupt, truncated, unsupported, bombs -------------------------------

_VALID = _dumps(notification(alert("Hostile", "ab", labels={"svc": "web"})))
_COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "x-gzip": gzip.compress, "deflate": zlib.compress}


@st.composite
def corrupt_compressed(draw: st.DrawFn) -> tuple[str, bytes]:
    """A body whose Content-Encoding says gzip or deflate and whose bytes do not hold a valid
    notification: random, truncated, bit-flipped, doubly compressed, or compressed garbage."""
    encoding = draw(st.sampled_from(sorted(_COMPRESS)))
    packed = _COMPRESS[encoding](_VALID)
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "double", "garbage", "empty"]))
    if kind == "random":
        return encoding, draw(st.binary(max_size=4096))
    if kind == "truncated":
        return encoding, packed[:draw(st.integers(0, len(packed) - 9))]
    if kind == "flipped":
        at = draw(st.integers(0, len(packed) - 1))
        flipped = bytes([packed[at] ^ draw(st.integers(1, 255))])
        return encoding, packed[:at] + flipped + packed[at + 1:]
    if kind == "double":
        return encoding, _COMPRESS[encoding](packed)
    if kind == "garbage":
        return encoding, _COMPRESS[encoding](draw(garbage))
    return encoding, b""


@st.composite
def unsupported_encoding(draw: st.DrawFn) -> tuple[str, bytes]:
    encoding = draw(st.sampled_from(["br", "zstd", "compress", "x-compress", "gzip, br",
                                     "deflate, gzip", "gzip;q=1", "\u00e9", "*"])
                    | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                              max_size=20).filter(lambda e: e.lower() not in (
                                  "gzip", "x-gzip", "deflate", "identity")))
    return encoding, draw(st.sampled_from([_VALID, gzip.compress(_VALID), b""])
                          | st.binary(max_size=1024))


def test_malformed_compressed_bodies_get_4xx_and_no_traceback(
        remediator: RemediatorSpec, pg_url: str, tmp_path: Path, session: requests.Session) -> None:
    """Corrupt gzip/deflate used to raise inside aiohttp's parser (500 and a traceback); an
    encoding without its decoder (br) too. Now every one is a 4xx, logged as nothing worse."""
    before = table_counts(pg_url)
    url = f"{remediator.url}/api/v1/alerts"
    statuses: list[int] = []

    @settings(max_examples=COMPRESSED_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=corrupt_compressed() | unsupported_encoding())
    def check(case: tuple[str, bytes]) -> None:
        encoding, body = case
        resp = session.post(url, data=body, headers={**JSON_HEADERS, "Content-Encoding": encoding},
                            timeout=30)
        statuses.append(resp.status_code)
        assert resp.status_code in (400, 413, 415), (encoding, resp.status_code, resp.text[:200])

    check()
    # a gzip bomb (64 MiB of zeros in about 64 KiB) stops at the body limit
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    resp = session.post(url, data=bomb, headers={**JSON_HEADERS, "Content-Encoding": "gzip"},
                        timeout=30)
    assert resp.status_code == 413 and "decompressed body larger" in resp.json()["error"]
    # and a valid compressed notification is still accepted
    ok = session.post(url, data=gzip.compress(_VALID),
                      headers={**JSON_HEADERS, "Content-Encoding": "gzip"}, timeout=30)
    assert ok.status_code == 200, ok.text
    print(f"\nhypothesis: {len(statuses)} malformed compressed bodies: "
          f"{ {s: statuses.count(s) for s in sorted(set(statuses))} }")
    assert {400, 415} <= set(statuses)
    assert requests.get(f"{remediator.url}/-/healthy", timeout=5).status_code == 200
    after = table_counts(pg_url)
    assert after["notifications"] == before["notifications"] + 1  # the valid one alone
    log_text = (tmp_path / f"remediator-{remediator.replica}.log").read_text(errors="replace")
    assert "Traceback" not in log_text and "Error handling request" not in log_text, log_text[-3000:]
