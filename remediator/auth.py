"""Credentials for the webhook and the admin API: bearer token from a file, or basic auth."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from aiohttp import web
from vigil.remediator.config import AdminSettings, RemediatorConfig, WebhookSettings

from vigil.config import ConfigError

__all__ = ["Credentials", "load_credentials"]


@dataclass(frozen=True)
class Credentials:
    token: str | None = None
    username: str | None = None
    password: str | None = None

    @property
    def configured(self) -> bool:
        return self.token is not None or self.username is not None

    def check(self, request: web.Request) -> str | None:
        """The authenticated principal, or None. Compares in constant time."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return self.check_token(value.strip())
        if self.username is not None and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return self.check_password(user, password)
        return None

    def check_token(self, token: str) -> str | None:
        """"token" when `token` is the configured bearer token (constant time), else None."""
        if self.token is not None and hmac.compare_digest(token.encode(), self.token.encode()):
            return "token"
        return None

    def check_password(self, user: str, password: str) -> str | None:
        """The user when user and password are the configured basic-auth pair, else None."""
        if self.username is None:
            return None
        ok_user = hmac.compare_digest(user.encode(), self.username.encode())
        ok_pw = hmac.compare_digest(password.encode(), (self.password or "").encode())
        return user if ok_user and ok_pw else None


def _read(config: RemediatorConfig, path: str, where: str) -> str:
    try:
        value = config.path(path).read_text().strip()
    except OSError:
        raise ConfigError(None, where, "cannot read the secret file") from None
    if not value:
        raise ConfigError(None, where, "the secret file is empty")
    return value


def load_credentials(config: RemediatorConfig, section: WebhookSettings | AdminSettings,
                     name: str) -> Credentials:
    token = (_read(config, section.bearer_token_file, f"{name}.bearer_token_file")
             if section.bearer_token_file else None)
    if section.basic_auth:
        return Credentials(token, section.basic_auth.username,
                           _read(config, section.basic_auth.password_file,
                                 f"{name}.basic_auth.password_file"))
    return Credentials(token)
