"""Pure logic of the exporter: browser CORS verdicts, secret judgement, types, paths, score."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict
from vigil.exporter.base import CheckResult, Finding, Severity
from vigil.exporter.config import EnvVariable, parse_config
from vigil.exporter.cors import judge_actual, judge_preflight, needs_preflight, probe_origins_for
from vigil.exporter.env import check_type, hash_value, parse_dotenv
from vigil.exporter.journeys import substitute
from vigil.exporter.jsonpath import MISSING, JsonPathError, parse_path, resolve
from vigil.exporter.probe import ProbeResponse
from vigil.exporter.score import config_score
from vigil.exporter.secrets import is_known_example, is_placeholder, is_weak
from vigil.exporter.service import scrape_budget

from vigil.config import ConfigError

O = "https://app.example.com"


def resp(headers: dict[str, str], status: int = 204) -> ProbeResponse:
    h: CIMultiDict[str] = CIMultiDict()
    for k, v in headers.items():
        h.add(k.replace("_", "-"), v)
    return ProbeResponse(status, h, b"", 0.0)


GOOD = {
    "Access_Control_Allow_Origin": O,
    "Access_Control_Allow_Credentials": "true",
    "Access_Control_Allow_Methods": "GET, POST, PATCH",
    "Access_Control_Allow_Headers": "content-type",
    "Vary": "Origin",
}


def test_preflight_allows_listed_method_and_header() -> None:
    v = judge_preflight(resp(GOOD), O, "PATCH", ["Content-Type"], credentials=True)
    assert v.allowed and not v.vary_missing


def test_preflight_methods_are_case_sensitive() -> None:
    v = judge_preflight(
        resp({**GOOD, "Access_Control_Allow_Methods": "get, post, patch"}),
        O,
        "PATCH",
        [],
        credentials=True,
    )
    assert not v.allowed and v.case_mismatch
    # safelisted methods pass whatever the list says
    assert judge_preflight(
        resp({**GOOD, "Access_Control_Allow_Methods": "patch"}), O, "POST", [], credentials=True
    ).allowed


def test_preflight_wildcards_do_not_cover_credentialed_requests() -> None:
    star = {**GOOD, "Access_Control_Allow_Methods": "*", "Access_Control_Allow_Headers": "*"}
    assert not judge_preflight(resp(star), O, "DELETE", [], credentials=True).allowed
    nocreds = {**star, "Access_Control_Allow_Origin": "*"}
    del nocreds["Access_Control_Allow_Credentials"]
    assert judge_preflight(resp(nocreds), O, "DELETE", ["X-Custom"], credentials=False).allowed
    # `*` never covers Authorization
    v = judge_preflight(resp(nocreds), O, "DELETE", ["Authorization"], credentials=False)
    assert v.refused_headers == ["Authorization"]


def test_preflight_wildcard_origin_with_credentials_is_flagged_and_refused() -> None:
    v = judge_preflight(resp({**GOOD, "Access_Control_Allow_Origin": "*"}), O, "GET", [], True)
    assert v.wildcard_with_credentials and not v.origin_ok and not v.allowed


def test_preflight_non_2xx_and_missing_vary() -> None:
    v = judge_preflight(
        resp({k: v for k, v in GOOD.items() if k != "Vary"}, 302), O, "GET", [], True
    )
    assert not v.status_ok and not v.allowed and v.vary_missing


def test_actual_response_needs_exact_origin() -> None:
    assert judge_actual(resp(GOOD, 200), O, True)[0]
    assert not judge_actual(
        resp({**GOOD, "Access_Control_Allow_Origin": "https://x.example"}, 200), O, True
    )[0]
    assert not judge_actual(resp({}, 200), O, False)[0]


def test_needs_preflight() -> None:
    assert not needs_preflight("GET", ["Accept"])
    assert needs_preflight("PATCH", [])
    assert needs_preflight("POST", ["Content-Type"])  # JSON bodies are not safelisted


def test_probe_origins_cover_every_class() -> None:
    near = probe_origins_for("https://app.example.com:8443")
    expected = {
        "https://evilapp.example.com:8443": "pre_domain",
        "http://evilapp.example.com:8443": "pre_domain",
        "https://evilexample.com:8443": "pre_domain",
        "https://app.example.com.evil.example:8443": "post_domain",
        "http://app.example.com.evil.example:8443": "post_domain",
        "https://appxexample.com:8443": "unescaped_dot",
        "https://app.examplexcom:8443": "unescaped_dot",
        "https://vigilprobe.example.com:8443": "subdomain",
        "https://app.example.com_.evil.example:8443": "special_chars",
        "https://app.example.com%60.evil.example:8443": "special_chars",
        "https://app.example.co:8443": "substring",
        "http://app.example.com:8443": "http_downgrade",
    }
    assert expected.items() <= near.items()
    assert "https://app.example.com:8443" not in near
    # Deterministic: the same probes (and finding subjects) on every scrape.
    assert probe_origins_for("https://app.example.com:8443") == near
    # An http origin has no downgrade; an IP address has no subdomains; null has no look-alikes.
    assert "http_downgrade" not in probe_origins_for("http://app.example.com").values()
    assert "subdomain" not in probe_origins_for("http://127.0.0.1:8080").values()
    assert probe_origins_for("null") == {}
    assert probe_origins_for("https://[::1]:8443") == {"http://[::1]:8443": "http_downgrade"}
    assert probe_origins_for("http://127.0.0.1:8080") == {}


@pytest.mark.parametrize(
    "value",
    [
        "changeme",
        "CHANGE_ME",
        "${DB_PASSWORD}",
        "$TOKEN",
        "xxxx",
        "<your-key>",
        "your_api_key_here",
        "",
        "  ",
        "placeholder",
        "{{ secret }}",
        "TODO",
    ],
)
def test_placeholders(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize(
    "value", ["f3a9c1d2e4b5a6978877665544332211", "sk_live_abcDEF123456ghiJKL"]
)
def test_real_looking_values_are_not_placeholders(value: str) -> None:
    assert not is_placeholder(value) and not is_known_example(value)


def test_weak_and_known_examples() -> None:
    assert is_weak("short", 16) == "shorter than 16 characters"
    assert is_weak("a" * 40, 16) == "repeats one or two characters"
    assert is_weak("abababababcabababab", 16)
    assert is_weak("9fK2mQ7xLp4Rz8Tw1VbN6cYe", 16) is None
    assert is_known_example("AKIAIOSFODNN7EXAMPLE")
    assert is_known_example("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("int", "42", "4x2"),
        ("bool", "yes", "maybe"),
        ("port", "8080", "70000"),
        ("url", "https://db.internal:5432/x", "not a url"),
        ("duration", "1h30m", "90 minutes"),
    ],
)
def test_types(kind: str, good: str, bad: str) -> None:
    var = EnvVariable(name="X", type=kind)  # type: ignore[arg-type]
    assert check_type(good, var) is None
    assert check_type(bad, var) is not None
    assert bad not in (check_type(bad, var) or "")


def test_enum_type() -> None:
    var = EnvVariable(name="X", type="enum", values=["a", "b"])
    assert check_type("a", var) is None and check_type("c", var)


def test_dotenv_parsing() -> None:
    env, bad = parse_dotenv("# c\nexport A=1\nB=\"two words\"\nC=three # comment\nD='x#y'\n")
    assert env == {"A": "1", "B": "two words", "C": "three", "D": "x#y"} and bad == []


def test_dotenv_reads_what_python_dotenv_accepts() -> None:
    """Lines python-dotenv accepts (a multi-line quoted value, a dotted key, a bare key with no
    `=`, spaces around `=`) are read as load_dotenv reads them; a line it cannot parse is
    reported by number and the rest of the file still counts."""
    text = 'A="line one\nline two"\nmy.key = 1\nBARE\nB="unterminated\nC=3\n'
    env, bad = parse_dotenv(text)
    assert env["A"] == "line one\nline two" and env["my.key"] == "1"
    assert "BARE" not in env
    import io

    from dotenv import dotenv_values

    reference = {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}
    assert env == reference
    assert bad and all(isinstance(n, int) for n in bad)


def test_hash_is_salted() -> None:
    assert hash_value("v", b"s1", 10) != hash_value("v", b"s2", 10)
    assert hash_value(None, b"s1") is None


def test_jsonpath() -> None:
    doc = {"items": [{"id": 3, "tags": {"a-b": 1}}]}
    assert resolve(doc, "$.items[0].id") == 3
    assert resolve(doc, '$.items[0].tags["a-b"]') == 1
    assert resolve(doc, "$.items[1].id") is MISSING
    assert parse_path("$") == []
    with pytest.raises(JsonPathError):
        parse_path("$.items[*]")


def test_substitute_keeps_types_and_quotes_paths() -> None:
    assert substitute({"id": "{id}", "n": "x-{id}"}, {"id": 7}) == {"id": 7, "n": "x-7"}
    assert substitute("/items/{id}", {"id": "a/b"}, in_path=True) == "/items/a%2Fb"
    with pytest.raises(KeyError):
        substitute("/items/{nope}", {}, in_path=True)


def test_score_formula() -> None:
    def res(*sev: Severity, ok: bool = True) -> CheckResult:
        return CheckResult("t", "c", ok, findings=[Finding("r", s, "x", "m") for s in sev])

    assert config_score([]) == 100.0
    assert config_score([res(), res(), res(), res(Severity.CRITICAL)]) == 75.0
    assert config_score([res(), res(), res(), res(Severity.WARNING, Severity.INFO)]) == 87.5
    assert config_score([res(), res(ok=False)]) == 50.0


def test_scrape_budget() -> None:
    assert scrape_budget("10", 5, 0.5) == 9.5
    assert scrape_budget(None, 5, 0.5) == 4.5
    assert scrape_budget("nan", 5, 0.5) == 4.5
    assert scrape_budget("0.2", 5, 0.5) == 0.1


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({}, "targets"),
        ({"targets": [{"name": "a", "base_url": "ftp://x"}]}, "targets[0].base_url"),
        (
            {
                "targets": [
                    {"name": "a", "base_url": "http://x", "cors": {"origins": ["https://a/b"]}}
                ]
            },
            "targets[0].cors.origins[0]",
        ),
        (
            {
                "targets": [
                    {
                        "name": "a",
                        "base_url": "http://x",
                        "cors": {"origins": ["https://a"], "methods": ["FETCH"]},
                    }
                ]
            },
            "targets[0].cors.methods[0]",
        ),
        (
            {
                "targets": [
                    {
                        "name": "a",
                        "base_url": "http://x",
                        "env": {"variables": [{"name": "A", "pattern": "(["}]},
                    }
                ]
            },
            "targets[0].env.variables[0].pattern",
        ),
        (
            {
                "targets": [
                    {
                        "name": "a",
                        "base_url": "http://x",
                        "endpoints": {"items": [{"name": "e", "path": "/", "json_path": "items"}]},
                    }
                ]
            },
            "targets[0].endpoints.items[0].json_path",
        ),
        ({"targets": [{"name": "a", "base_url": "http://x", "corz": {}}]}, "targets[0].corz"),
    ],
)
def test_config_errors_name_the_key_path(data: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "x.yml")
    assert info.value.path == path, str(info.value)


def test_config_errors_never_echo_values() -> None:
    data = {"targets": [{"name": "a", "base_url": "http://user:hunter2-canary@x"}]}
    with pytest.raises(ConfigError) as info:
        parse_config(data, "x.yml")
    assert "hunter2" not in str(info.value)


def test_every_catalogued_family_passes_promtool() -> None:
    import subprocess

    from prometheus_client import CollectorRegistry, generate_latest
    from vigil.exporter.collector import result_families
    from vigil.exporter.metrics import SAMPLE_FAMILIES as OURS
    from vigil.exporter.schema.metrics import SAMPLE_FAMILIES as SCHEMA

    SAMPLE_FAMILIES = {**OURS, **SCHEMA}

    from tests.harness import require_binary

    result = CheckResult("t", "c", True, findings=[Finding("r", Severity.INFO, "s", "m")])
    for name, (_, labels) in SAMPLE_FAMILIES.items():
        result.add_sample(name, {label: "v" for label in labels}, 1.0)

    class Results:
        def collect(self):  # type: ignore[no-untyped-def]
            return result_families([result], cached={("t", "c")})

    registry = CollectorRegistry()
    registry.register(Results())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert all(name in text for name in SAMPLE_FAMILIES)
    lint = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text,
        check=False,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), (
        lint.stdout + lint.stderr
    )


def test_every_config_error_is_listed_with_its_key_path() -> None:
    data = {
        "scrape_timeout": -1,
        "targets": [
            {
                "name": "a",
                "base_url": "ftp://x",
                "cors": {"origins": ["https://a/b"], "methods": ["FETCH"]},
            }
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, "x.yml")
    text = str(info.value)
    assert info.value.path == "scrape_timeout"
    for path in ("targets[0].base_url", "targets[0].cors.origins[0]", "targets[0].cors.methods[0]"):
        assert f"; {path}: " in text, text
