"""The action library: each step kind as one coroutine. Commands are argv lists, never a shell.

Parameters reach steps only through `${name}` templates, after validation against the
procedure's declared patterns; SQL gets them as bind parameters only. Secrets (bearer tokens,
database URLs) are read from files at call time and never appear in step output.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import sqlalchemy as sa
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from vigil.remediator.breaker import BreakerOpen, Breakers
from vigil.remediator.config import (
    CircuitBreakerStep,
    CommandStep,
    ConfigRestoreStep,
    DockerRestartStep,
    HttpStep,
    KubernetesRolloutRestartStep,
    RemediatorConfig,
    SilenceStep,
    SqlStep,
    SystemdRestartStep,
    WaitStep,
)
from vigil.remediator.store import normalise_url
from vigil.remediator.templating import render, render_value

__all__ = ["ActionContext", "ActionFailed", "Cancelled", "describe_step", "run_step", "step_name"]

MAX_OUTPUT = 4096


class ActionFailed(RuntimeError):
    """A step did not succeed; the message is safe to store (no secrets)."""


class Cancelled(RuntimeError):
    """The run was told to stop (the alert resolved or the kill switch was pulled)."""


class _Retryable(RuntimeError):
    pass


@dataclass
class ActionContext:
    config: RemediatorConfig
    session: aiohttp.ClientSession
    breakers: Breakers
    params: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    silences: list[str] = field(default_factory=list)
    sql_engines: dict[str, sa.Engine] = field(default_factory=dict)

    def token(self, name: str | None) -> str | None:
        if name is None:
            return None
        cred = self.config.credentials[name]
        try:
            return self.config.path(cred.bearer_token_file).read_text().strip()
        except OSError:
            raise ActionFailed(f"cannot read the token file of credentials {name!r}") from None

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up and raise Cancelled as soon as we are told to stop."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise Cancelled("stopped")


def step_name(step: Any, index: int) -> str:
    return step.name or f"{index + 1}-{step.action}"


async def _read_capped(resp: aiohttp.ClientResponse) -> str:
    """The start of the body (MAX_OUTPUT bytes and one more, so _clip can mark the cut); the
    rest is never read, so an endless or huge body cannot fill memory."""
    data = bytearray()
    async for chunk in resp.content.iter_chunked(MAX_OUTPUT + 1):
        data += chunk
        if len(data) > MAX_OUTPUT:
            break
    return bytes(data[:MAX_OUTPUT + 1]).decode("utf-8", errors="replace")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + "...(truncated)"


async def _http(ctx: ActionContext, method: str, url: str, *, body: Any = None,
                headers: dict[str, str] | None = None, credentials: str | None = None,
                timeout: float = 10.0, retries: int = 3, backoff: float = 0.5,
                expect: list[int] | None = None) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ActionFailed("url: expected an absolute http(s) URL")
    breaker = ctx.breakers.get(parts.netloc)
    hdrs = dict(headers or {})
    token = ctx.token(credentials)
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    kwargs: dict[str, Any] = {"headers": hdrs, "timeout": aiohttp.ClientTimeout(total=timeout)}
    if isinstance(body, (dict, list)):
        kwargs["json"] = body
    elif body is not None:
        kwargs["data"] = str(body)

    async def once() -> str:
        breaker.before_call()
        try:
            async with ctx.session.request(method, url, **kwargs) as resp:
                text = await _read_capped(resp)
                ok = resp.status in expect if expect else 200 <= resp.status < 300
                if not ok:
                    retry = resp.status >= 500 or resp.status == 429
                    breaker.record(not retry)
                    msg = f"HTTP {resp.status} from {method} {parts.netloc}{parts.path}: {_clip(text)}"
                    raise (_Retryable if retry else ActionFailed)(msg)
                breaker.record(True)
                return f"HTTP {resp.status}: {_clip(text)}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            breaker.record(False)
            raise _Retryable(f"{method} {parts.netloc}{parts.path}: {exc.__class__.__name__}") from None

    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(retries + 1),
            wait=wait_exponential(multiplier=backoff, max=10),
            retry=retry_if_exception_type(_Retryable), reraise=True,
        ):
            with attempt:
                if ctx.stop.is_set():
                    raise Cancelled("stopped")
                return await once()
    except _Retryable as exc:
        raise ActionFailed(f"{exc} (after {retries + 1} tries)") from None
    except BreakerOpen as exc:
        raise ActionFailed(str(exc)) from None
    except RetryError as exc:  # pragma: no cover - reraise=True makes this unreachable
        raise ActionFailed(str(exc)) from None
    raise ActionFailed("no request made")  # pragma: no cover


async def _argv(ctx: ActionContext, argv: list[str], *, timeout: float,
                env: dict[str, str] | None = None, env_allow: list[str] | None = None,
                cwd: str | None = None) -> str:
    """Run an argument list (never a shell) with only allow-listed environment variables."""
    child_env = {k: os.environ[k] for k in (env_allow or []) if k in os.environ}
    child_env.update(env or {})
    exe = argv[0]
    if os.sep not in exe:
        found = shutil.which(exe)
        if found is None:
            raise ActionFailed(f"command not found: {exe}")
        exe = found
    try:
        proc = await asyncio.create_subprocess_exec(
            exe, *argv[1:], stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=child_env, cwd=cwd, start_new_session=True)
    except OSError as exc:
        raise ActionFailed(f"cannot start {argv[0]}: {exc.strerror}") from None
    waiter = asyncio.ensure_future(proc.communicate())
    stopper = asyncio.ensure_future(ctx.stop.wait())
    done, _ = await asyncio.wait({waiter, stopper}, timeout=timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if waiter not in done:
        proc.kill()
        await waiter
        if ctx.stop.is_set():
            raise Cancelled("stopped while the command ran")
        raise ActionFailed(f"{argv[0]} timed out after {timeout:g}s")
    out = (waiter.result()[0] or b"").decode(errors="replace")
    if proc.returncode != 0:
        raise ActionFailed(f"{argv[0]} exited with {proc.returncode}: {_clip(out)}")
    return f"exit 0: {_clip(out)}"


def _render_step(step: Any, params: dict[str, str]) -> dict[str, Any]:
    data = step.model_dump()
    statement = data.pop("statement", None)
    data = render_value(data, params)
    if statement is not None:
        data["statement"] = statement
    return data


def describe_step(step: Any, params: dict[str, str], config: RemediatorConfig) -> dict[str, Any]:
    """What a step would do, rendered with its parameters (for dry runs and `simulate`)."""
    data = _render_step(step, params)
    if isinstance(step, SqlStep):
        data["binds"] = _binds(step.statement, params)
    if isinstance(step, (SystemdRestartStep, KubernetesRolloutRestartStep, DockerRestartStep)):
        data["argv"] = _service_argv(step, params, config)
    return {k: v for k, v in data.items() if v not in (None, [], {}, "")}


def _service_argv(step: Any, params: dict[str, str], config: RemediatorConfig) -> list[str]:
    b = config.binaries
    if isinstance(step, SystemdRestartStep):
        return [b.systemctl, *(["--user"] if step.user else []), "restart", "--",
                render(step.unit, params)]
    if isinstance(step, KubernetesRolloutRestartStep):
        argv = [b.kubectl]
        if step.context:
            argv += ["--context", render(step.context, params)]
        if step.namespace:
            argv += ["--namespace", render(step.namespace, params)]
        argv += ["rollout", "restart", render(step.resource, params)]
        return argv
    assert isinstance(step, DockerRestartStep)
    return [b.docker, "restart", "--time", str(step.stop_timeout), "--", render(step.container, params)]


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sql_engine(ctx: ActionContext, name: str) -> sa.Engine:
    if name not in ctx.sql_engines:
        ref = ctx.config.databases[name]
        if ref.url_file:
            try:
                url = ctx.config.path(ref.url_file).read_text().strip()
            except OSError:
                raise ActionFailed(f"cannot read the URL file of database {name!r}") from None
        else:
            url = ref.url or ""
        ctx.sql_engines[name] = sa.create_engine(normalise_url(url), pool_size=1, max_overflow=0,
                                                 pool_pre_ping=True)
    return ctx.sql_engines[name]


def _binds(statement: str, params: dict[str, str]) -> dict[str, str]:
    """The parameters a statement names as :binds (parameters are never spliced into SQL)."""
    names = set(sa.text(statement)._bindparams)
    return {k: v for k, v in params.items() if k in names}


def _run_sql(engine: sa.Engine, statement: str, binds: dict[str, Any]) -> str:
    with engine.begin() as conn:
        result = conn.execute(sa.text(statement), binds)
        if result.returns_rows:
            rows = [list(r) for r in result.fetchmany(20)]
            return f"{len(rows)} row(s): {_clip(json.dumps(rows, default=str))}"
        return f"{result.rowcount} row(s) affected"


async def run_step(step: Any, ctx: ActionContext) -> str:
    """Run one step; return its output, raise ActionFailed or Cancelled."""
    if ctx.stop.is_set():
        raise Cancelled("stopped before the step started")
    p = ctx.params
    if isinstance(step, HttpStep):
        return await _http(ctx, step.method, render(step.url, p), body=render_value(step.body, p),
                           headers=render_value(step.headers, p), credentials=step.credentials,
                           timeout=step.timeout, retries=step.retries, backoff=step.retry_backoff,
                           expect=step.expect_status)
    if isinstance(step, CommandStep):
        return await _argv(ctx, [render(a, p) for a in step.argv], timeout=step.timeout,
                           env=render_value(step.env, p), env_allow=step.env_allow,
                           cwd=render(step.cwd, p) if step.cwd else None)
    if isinstance(step, (SystemdRestartStep, KubernetesRolloutRestartStep, DockerRestartStep)):
        return await _argv(ctx, _service_argv(step, p, ctx.config), timeout=step.timeout,
                           env_allow=["PATH", "HOME", "KUBECONFIG", "DOCKER_HOST"])
    if isinstance(step, SqlStep):
        engine = _sql_engine(ctx, step.database)
        binds = _binds(step.statement, p)
        try:
            return await asyncio.wait_for(asyncio.to_thread(_run_sql, engine, step.statement, binds),
                                          timeout=step.timeout)
        except TimeoutError:
            raise ActionFailed(f"sql on {step.database!r} timed out after {step.timeout:g}s") from None
        except sa.exc.SQLAlchemyError as exc:
            raise ActionFailed(f"sql on {step.database!r} failed: {exc.__class__.__name__}: "
                               f"{_clip(str(getattr(exc, 'orig', exc)).splitlines()[0])}") from None
    if isinstance(step, ConfigRestoreStep):
        baseline = ctx.config.path(render(step.baseline, p))
        live = ctx.config.path(render(step.live, p))
        try:
            data = baseline.read_bytes()
            _write_atomic(live, data)
        except OSError as exc:
            raise ActionFailed(f"config restore failed: {exc.strerror or exc.__class__.__name__}") from None
        out = f"restored {len(data)} bytes from {baseline.name} to {live.name}"
        if step.reload_url:
            out += "; reload " + await _http(ctx, step.reload_method, render(step.reload_url, p),
                                             credentials=step.credentials, timeout=step.timeout)
        return out
    if isinstance(step, CircuitBreakerStep):
        body: dict[str, Any] = {"state": step.state}
        if step.retry_after is not None:
            body["retry_after_seconds"] = step.retry_after
        return await _http(ctx, "POST", render(step.url, p), body=body,
                           credentials=step.credentials, timeout=step.timeout)
    if isinstance(step, SilenceStep):
        return await _silence(step, ctx)
    if isinstance(step, WaitStep):
        started = time.monotonic()
        await ctx.sleep(step.seconds)
        return f"waited {time.monotonic() - started:.1f}s"
    raise ActionFailed(f"unknown action {step.action!r}")  # pragma: no cover


async def _silence(step: SilenceStep, ctx: ActionContext) -> str:
    base = ctx.config.alertmanager_url
    if not base:
        raise ActionFailed("silence: alertmanager_url is not configured")
    if step.matchers:
        matchers = [{"name": m.name, "value": render(m.value, ctx.params),
                     "isRegex": m.op in ("=~", "!~"), "isEqual": m.op in ("=", "=~")}
                    for m in step.matchers]
    else:
        matchers = [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                    for k, v in sorted(ctx.labels.items())]
    now = datetime.now(UTC)
    body = {"matchers": matchers, "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(seconds=step.duration)).isoformat(),
            "createdBy": "vigil-remediator", "comment": render(step.comment, ctx.params)}
    out = await _http(ctx, "POST", f"{base.rstrip('/')}/api/v2/silences", body=body,
                      timeout=step.timeout, retries=2)
    try:
        silence_id = json.loads(out.split(": ", 1)[1])["silenceID"]
    except (IndexError, ValueError, KeyError, TypeError):
        raise ActionFailed("silence: unexpected answer from Alertmanager") from None
    ctx.silences.append(silence_id)
    return f"silence {silence_id} created for {step.duration:g}s"


async def expire_silences(ctx: ActionContext) -> list[str]:
    """Expire every silence this run created; return what happened for the record."""
    out = []
    base = (ctx.config.alertmanager_url or "").rstrip("/")
    for silence_id in ctx.silences:
        try:
            async with ctx.session.delete(f"{base}/api/v2/silence/{silence_id}",
                                          timeout=aiohttp.ClientTimeout(total=10)) as resp:
                out.append(f"silence {silence_id} expired: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            out.append(f"silence {silence_id} not expired: {exc.__class__.__name__}")
    ctx.silences.clear()
    return out


Clock = Callable[[], float]
