"""Bearer tokens of the exchange interface: which party a request acts for.

Every request carries `Authorization: Bearer <token>` (spec/interface.md, Security). A
`TokenTable` maps each token to one party, or to the operator (`OPERATOR`, who sees every
party's offers). Tokens are kept only as SHA-256 digests and looked up by digest, so the time
a lookup takes says nothing about how much of a guessed token was right.

The tokens file of `goflex-atp serve` (YAML or JSON):

    parties:              # token: party
      3f6c0d1e9a7b4c2d8e5f: foss-p017
      9a8b7c6d5e4f3a2b1c0d: foss-p018
    operators:            # tokens that see everything
      - 0d1c2b3a4f5e6d7c8b9a
    grid_operators:       # parties (DSOs) that may publish grid capacities (PUT /capacity/{name})
      - dso-foss

Every problem of the file is one sentence naming the file and the key; a token itself is never
printed (it is a secret).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atp.errors import ValidationError
from atp.interface.errors import UnauthorizedError
from atp.interface.store import OPERATOR
from atp.interface.yamlfile import read_yaml

__all__ = ["MIN_TOKEN_CHARS", "TokenFileError", "TokenTable", "load_tokens", "tokens_from_dict"]

MIN_TOKEN_CHARS = 16


class TokenFileError(ValidationError):
    """The tokens file cannot be read or has a wrong key; the message names the file and key."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, eq=False)
class TokenTable:
    """Token digests -> party (`OPERATOR` for operator tokens), and the parties that are grid
    operators (DSOs: they may publish grid capacities)."""

    _by_digest: Mapping[bytes, str]
    grid_operators: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls, tokens: Mapping[str, str], operator_tokens: Collection[str] = (), grid_operators: Collection[str] = ()
    ) -> TokenTable:
        """From `tokens` (token -> party), `operator_tokens` and `grid_operators` (parties of
        `tokens`); a token may name one party only."""
        table: dict[bytes, str] = {}
        for token, party in tokens.items():
            if party == OPERATOR:
                raise ValueError(f"party name {OPERATOR!r} is reserved for operator tokens")
            table[_digest(token)] = party
        for token in operator_tokens:
            if table.get(_digest(token), OPERATOR) != OPERATOR:
                raise ValueError("an operator token is also a party's token")
            table[_digest(token)] = OPERATOR
        unknown = sorted(set(grid_operators) - set(tokens.values()))
        if unknown:
            raise ValueError(f"grid operators {unknown} are not parties of the tokens")
        return cls(table, frozenset(grid_operators))

    def __len__(self) -> int:
        return len(self._by_digest)

    def party_of(self, authorization: str | None) -> str:
        """The party of an `Authorization` header value; UnauthorizedError (401) otherwise."""
        if not authorization:
            raise UnauthorizedError("no Authorization header; send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthorizedError("the Authorization header must read 'Bearer <token>'")
        party = self._by_digest.get(_digest(token))
        if party is None:
            raise UnauthorizedError("unknown token")
        return party


def _token_problem(token: Any, where: str) -> str | None:
    if not isinstance(token, str) or not token.strip():
        return f"{where} must be a non-empty string (quote it if it looks like a number)"
    if token != token.strip() or any(c.isspace() for c in token):
        return f"{where} must not contain spaces"
    if len(token) < MIN_TOKEN_CHARS:
        return f"{where} has {len(token)} characters; use at least {MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 16`)"
    return None


def tokens_from_dict(data: Any, *, source: str = "tokens") -> TokenTable:
    """The token table a parsed tokens file describes; TokenFileError naming `source` and the key."""

    def fail(key: str, message: str) -> TokenFileError:
        return TokenFileError(f"{source}: {key}: {message}")

    if not isinstance(data, Mapping):
        raise TokenFileError(f"{source}: must be a mapping with the keys 'parties' and 'operators'")
    for key in data:
        if key not in ("parties", "operators", "grid_operators"):
            raise fail(str(key), "is not a known key (known: parties, operators, grid_operators)")
    parties = data.get("parties") or {}
    operators = data.get("operators") or []
    grid_operators = data.get("grid_operators") or []
    if not isinstance(parties, Mapping):
        raise fail("parties", "must map each token to a party name")
    if not isinstance(operators, list):
        raise fail("operators", "must be a list of tokens")
    seen: set[str] = set()
    for i, (token, party) in enumerate(parties.items()):
        if not isinstance(party, str) or not party.strip():
            raise fail(f"parties (entry {i + 1})", "the party name must be a non-empty string")
        if party == OPERATOR:
            raise fail("parties", f"the party name {OPERATOR!r} is reserved; list operator tokens under 'operators'")
        problem = _token_problem(token, f"the token of party {party!r}")
        if problem:
            raise fail("parties", problem)
        seen.add(token)
    for i, token in enumerate(operators):
        problem = _token_problem(token, f"operator token {i + 1}")
        if problem:
            raise fail("operators", problem)
        if token in seen:
            raise fail("operators", f"operator token {i + 1} is also a party's token")
    if not parties and not operators:
        raise TokenFileError(f"{source}: lists no tokens (give 'parties' and/or 'operators')")
    if not isinstance(grid_operators, list) or not all(isinstance(p, str) for p in grid_operators):
        raise fail("grid_operators", "must be a list of party names")
    unknown = sorted(set(grid_operators) - set(parties.values()))
    if unknown:
        raise fail("grid_operators", f"{unknown} are not parties of 'parties'")
    return TokenTable.of(dict(parties), operators, grid_operators)


def load_tokens(path: str | Path) -> TokenTable:
    """Read a tokens file (YAML or JSON); TokenFileError with one sentence when it is wrong."""
    data = read_yaml(path, what="tokens", error=TokenFileError)
    return tokens_from_dict(data, source=str(path))
