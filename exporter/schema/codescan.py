"""Find the table names code uses, and report those the database does not have.

Sources of names:
- SQL in Python: arguments of text()/execute()/executemany()/exec_driver_sql()/read_sql*() and
  friends, strings assigned to names containing sql/query/stmt, and strings that start with an
  upper-case SELECT/INSERT/UPDATE/DELETE/WITH. f-string fields become opaque placeholders.
- ORM declarations: `__tablename__`, `Table("name", ...)`, `table("name")`, `ForeignKey("t.c")`.
- .sql files (and any extra globs), statement by statement.

Not reported, so they give no false positives: CTE names, tables a scanned file creates itself
(CREATE [TEMP] TABLE/VIEW, SELECT INTO), set-returning functions in FROM, `FROM` inside
function calls (EXTRACT(... FROM ...), SUBSTRING, TRIM), `IS DISTINCT FROM`, system catalogs
(pg_*, information_schema, sqlite_*), and names qualified with a schema that was not inspected.
Unquoted identifiers fold to lower case, quoted ones keep their case (PostgreSQL rules); on
SQLite every comparison ignores case.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vigil.exporter.base import Finding, Severity

from .config import CodeReferencesConfig
from .model import Snapshot

__all__ = [
    "ScanResult",
    "TableRef",
    "reference_findings",
    "refs_in_sql",
    "scan_paths",
    "scan_python",
    "scan_sql",
]

MAX_FILE_BYTES = 2_000_000


@dataclass(frozen=True)
class TableRef:
    """One use of a table name in code."""

    name: str  # folded per identifier rules
    schema: str | None
    exact: bool  # quoted (or ORM-declared): compare case-sensitively
    file: str
    line: int

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class ScanResult:
    refs: list[TableRef] = field(default_factory=list)
    defined: set[str] = field(default_factory=set)  # names the code creates itself (folded)
    files: int = 0
    unparsable: list[str] = field(default_factory=list)


# --- SQL tokenizer -----------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<str>[eEbBxXnN]?'(?:[^']|'')*'?)
  | (?P<dollar>\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)
  | (?P<marker>\x00\d+\x00)
  | (?P<param>%\([^)]*\)s|%s|\$\d+|\?|(?<![:\w]):[A-Za-z_]\w*)
  | (?P<qident>"(?:[^"]|"")*"?|`[^`]*`?|\[[A-Za-z_][^\]]*\])
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
  | (?P<cast>::)
  | (?P<punct>[(),.;])
  | (?P<op>.)
""", re.VERBOSE | re.DOTALL)


@dataclass
class _Tok:
    kind: str  # word | qident | param | punct | other
    text: str  # words upper-cased in `up`, original in text
    pos: int

    @property
    def up(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


def _tokenize(sql: str) -> list[_Tok]:
    out: list[_Tok] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup or "op"
        if kind in ("ws", "comment", "tag"):
            continue
        if kind in ("str", "dollar", "num", "op", "cast"):
            out.append(_Tok("other", m.group(), m.start()))
        elif kind in ("param", "marker"):
            out.append(_Tok("param", m.group(), m.start()))
        else:
            out.append(_Tok(kind, m.group(), m.start()))
    return out


# words after which "(" opens a subquery or a list, not a function call
_KEYWORDS = {
    "SELECT", "FROM", "WHERE", "JOIN", "ON", "USING", "IN", "EXISTS", "AS", "AND", "OR", "NOT",
    "VALUES", "INTO", "ANY", "ALL", "SOME", "LATERAL", "UNION", "INTERSECT", "EXCEPT", "WITH",
    "RECURSIVE", "MATERIALIZED", "RETURNING", "SET", "UPDATE", "DELETE", "INSERT", "TABLE",
    "OVER", "FILTER", "WITHIN", "GROUP", "BY", "ORDER", "HAVING", "LIMIT", "OFFSET", "CASE",
    "WHEN", "THEN", "ELSE", "END", "IS", "NULL", "DISTINCT", "BETWEEN", "LIKE", "ILIKE",
    "ONLY", "CROSS", "INNER", "LEFT", "RIGHT", "FULL", "OUTER", "NATURAL", "MERGE", "CONFLICT",
    "DO", "NOTHING", "PARTITION", "WINDOW", "ROWS", "RANGE", "CHECK", "REFERENCES", "KEY",
    "PRIMARY", "UNIQUE", "FOREIGN", "DEFAULT", "CONSTRAINT", "INDEX", "VIEW", "CREATE",
    "ALTER", "ADD", "COLUMN", "TRUNCATE", "COPY", "LOCK", "FOR", "INCLUDE", "TO",
}
# keywords that end a FROM list at the depth where it started
_CLAUSE_END = {
    "WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "OFFSET", "UNION", "INTERSECT", "EXCEPT",
    "RETURNING", "WINDOW", "FOR", "SET", "VALUES", "SELECT", "FETCH", "INSERT", "UPDATE",
    "DELETE", "DO", "WHEN",
}
_STATEMENT_START = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "MERGE")


def _ident(tok: _Tok) -> tuple[str, bool] | None:
    """(folded name, exact) for an identifier token, else None."""
    if tok.kind == "word":
        return tok.text.lower(), False
    if tok.kind == "qident":
        t = tok.text
        if t.startswith('"'):
            return t[1:-1].replace('""', '"') if t.endswith('"') else t[1:], True
        return t[1:-1], True  # `mysql` or [mssql] quoting
    return None


@dataclass
class _SqlRef:
    name: str
    schema: str | None
    exact: bool
    pos: int


def refs_in_sql(sql: str) -> tuple[list[_SqlRef], set[str]]:
    """Table references in SQL text and the names it defines (CTEs, created tables)."""
    toks = _tokenize(sql)
    refs: list[_SqlRef] = []
    defined: set[str] = set()
    start = 0
    for i, tok in enumerate(toks + [_Tok("punct", ";", len(sql))]):
        if tok.kind == "punct" and tok.text == ";":
            r, d = _statement_refs(toks[start:i])
            refs.extend(r)
            defined |= d
            start = i + 1
    return refs, defined


def _read_name(toks: list[_Tok], i: int) -> tuple[list[tuple[str, bool]], int]:
    """Read a dotted name at i; return its parts and the index after it."""
    parts: list[tuple[str, bool]] = []
    while i < len(toks):
        ident = _ident(toks[i])
        if ident is None:
            break
        parts.append(ident)
        i += 1
        if i < len(toks) and toks[i].kind == "punct" and toks[i].text == ".":
            i += 1
            continue
        break
    return parts, i


def _statement_refs(toks: list[_Tok]) -> tuple[list[_SqlRef], set[str]]:
    refs: list[_SqlRef] = []
    local: set[str] = set()  # CTE names: scoped to this statement
    defined: set[str] = set()  # created tables: visible to the whole scan

    # CTE names: `WITH [RECURSIVE] name [(cols)] AS [NOT] [MATERIALIZED] (` and `, name AS (`
    for i, tok in enumerate(toks):
        ident = _ident(tok)
        if ident is None or i == 0:
            continue
        lead = toks[i - 1]
        if not (lead.up in ("WITH", "RECURSIVE")
                or (lead.kind == "punct" and lead.text == ",")):
            continue
        j = i + 1
        if j < len(toks) and toks[j].text == "(":
            depth = 0
            while j < len(toks):
                depth += toks[j].text == "("
                depth -= toks[j].text == ")"
                j += 1
                if depth == 0:
                    break
        if j < len(toks) and toks[j].up == "AS":
            j += 1
            while j < len(toks) and toks[j].up in ("NOT", "MATERIALIZED"):
                j += 1
            if j < len(toks) and toks[j].text == "(":
                local.add(_fold_key(*ident))

    func_depths: set[int] = set()  # depths whose "(" opened a function call
    from_depths: set[int] = set()  # depths inside a FROM/USING list
    depth = 0
    i = 0
    n = len(toks)
    while i < n:
        tok = toks[i]
        prev = toks[i - 1] if i else None
        if tok.kind == "punct" and tok.text == "(":
            nxt = toks[i + 1].up if i + 1 < n else ""
            depth += 1
            if (prev is not None and prev.kind in ("word", "qident") and prev.up not in _KEYWORDS
                    and nxt not in ("SELECT", "WITH", "VALUES")):
                func_depths.add(depth)
            i += 1
            continue
        if tok.kind == "punct" and tok.text == ")":
            func_depths.discard(depth)
            from_depths.discard(depth)
            depth = max(0, depth - 1)
            i += 1
            continue
        if depth in func_depths:
            i += 1
            continue
        up = tok.up
        expect = False
        column_list_follows = False  # INSERT INTO t (a, b): "(" is not a function call
        if up in _CLAUSE_END:
            from_depths.discard(depth)
        if up == "FROM":
            before = prev.up if prev else ""
            before2 = toks[i - 2].up if i >= 2 else ""
            is_distinct = before == "DISTINCT" and (before2 in ("IS", "NOT"))
            if not is_distinct:
                expect = True
                from_depths.add(depth)
        elif up == "JOIN":
            expect = True
        elif up == "USING":
            if i + 1 < n and toks[i + 1].text != "(":
                expect = True
                from_depths.add(depth)
        elif up == "UPDATE":
            before = prev.up if prev else ""
            if before not in ("FOR", "DO", "ON", "KEY", "THEN"):
                expect = True
        elif up == "INTO":
            before = prev.up if prev else ""
            if before in ("INSERT", "MERGE"):
                expect = column_list_follows = True
            else:  # SELECT ... INTO new_table creates a table
                parts, _ = _read_name(toks, _skip(toks, i + 1, ("TEMP", "TEMPORARY", "UNLOGGED",
                                                                 "TABLE")))
                if parts:
                    defined.add(_fold_key(*parts[-1]))
        elif up in ("TRUNCATE", "COPY", "REFERENCES") or (
                up == "TABLE" and prev is not None and prev.up in ("ALTER", "LOCK", "TRUNCATE")) or up == "ON" and _in_create_index(toks, i):
            expect = column_list_follows = True
        elif up in ("TABLE", "VIEW") and _is_create(toks, i):
            j = _skip(toks, i + 1, ("IF", "NOT", "EXISTS"))
            parts, _ = _read_name(toks, j)
            if parts:
                defined.add(_fold_key(*parts[-1]))
        elif tok.kind == "punct" and tok.text == "," and depth in from_depths:
            expect = True
        if expect:
            j = _skip(toks, i + 1, ("ONLY", "TABLE", "IF", "EXISTS", "LATERAL"))
            if j < n and toks[j].kind in ("word", "qident") and toks[j].up not in (
                    "SELECT", "WITH", "VALUES", "ROWS", "STDIN", "STDOUT"):
                parts, k = _read_name(toks, j)
                is_call = k < n and toks[k].text == "(" and not column_list_follows
                if parts and not is_call:
                    name, exact = parts[-1]
                    schema = parts[-2][0] if len(parts) >= 2 else None
                    if _fold_key(name, exact) not in local:
                        refs.append(_SqlRef(name, schema, exact, toks[j].pos))
                    i = k
                    continue
        i += 1
    return refs, defined


def _skip(toks: list[_Tok], i: int, words: tuple[str, ...]) -> int:
    while i < len(toks) and toks[i].up in words:
        i += 1
    return i


def _is_create(toks: list[_Tok], i: int) -> bool:
    j = i - 1
    while j >= 0 and toks[j].up in ("TEMP", "TEMPORARY", "UNLOGGED", "OR", "REPLACE",
                                    "MATERIALIZED", "RECURSIVE", "GLOBAL", "LOCAL", "FOREIGN"):
        j -= 1
    return j >= 0 and toks[j].up == "CREATE"


def _in_create_index(toks: list[_Tok], i: int) -> bool:
    for j in range(i - 1, max(-1, i - 8), -1):
        if toks[j].up == "INDEX":
            return j >= 1 and (toks[j - 1].up in ("CREATE", "UNIQUE"))
        if toks[j].up in ("JOIN", "FROM", "CONFLICT"):
            return False
    return False


def _fold_key(name: str, exact: bool) -> str:
    return name if exact else name.lower()


# --- Python -----------------------------------------------------------------------------------

_SQL_CALLS = {"text", "execute", "executemany", "executescript", "exec_driver_sql", "read_sql",
              "read_sql_query", "mogrify", "copy_expert", "fetch", "fetchrow", "fetchval",
              "prepare", "raw"}
_TABLE_CALLS = {"Table", "table"}
_SQL_NAME = re.compile(r"(?i)(sql|query|stmt|statement)")
# a string assigned to a SQL-sounding name must still start like a statement
_STARTS_LIKE_SQL = re.compile(
    r"^\s*(?:--[^\n]*\n\s*)*(?:select|insert|update|delete|with|merge|create|alter|truncate|copy)\b",
    re.IGNORECASE)
_LOOKS_LIKE_SQL = re.compile(
    r"^\s*(SELECT\b.*\bFROM\b|INSERT\s+INTO\b|UPDATE\s+\S+\s+SET\b|DELETE\s+FROM\b|WITH\b.*\bAS\s*\()",
    re.DOTALL)


def _string_value(node: ast.expr) -> str | None:
    """Text of a string expression; f-string fields become opaque markers."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for k, v in enumerate(node.values):
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                parts.append(v.value)
            else:
                parts.append(f"\x00{k}\x00")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _string_value(node.left), _string_value(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


class _PyVisitor(ast.NodeVisitor):
    def __init__(self, file: str, result: ScanResult) -> None:
        self.file = file
        self.result = result
        self.seen: set[int] = set()

    def sql(self, node: ast.expr) -> None:
        text = _string_value(node)
        if text is None or id(node) in self.seen:
            return
        self.seen.add(id(node))
        refs, defined = refs_in_sql(text)
        self.result.defined |= defined
        for r in refs:
            line = node.lineno + text.count("\n", 0, r.pos)
            self.result.refs.append(TableRef(r.name, r.schema, r.exact, self.file, line))

    def orm(self, name: str, lineno: int, schema: str | None = None) -> None:
        if name:
            self.result.refs.append(TableRef(name, schema, True, self.file, lineno))

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant):  # docstrings and bare strings are prose
            return
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        if name in _SQL_CALLS and node.args:
            self.sql(node.args[0])
        elif name in _TABLE_CALLS and node.args:
            value = _string_value(node.args[0])
            if value is not None and "\x00" not in value:
                self.seen.add(id(node.args[0]))
                schema = next((_string_value(k.value) for k in node.keywords
                               if k.arg == "schema"), None)
                self.orm(value, node.lineno, schema)
        elif name == "ForeignKey" and node.args:
            value = _string_value(node.args[0])
            if value is not None and "." in value:
                self.seen.add(id(node.args[0]))
                table_part = value.rpartition(".")[0]
                schema, _, table = table_part.rpartition(".")
                self.orm(table, node.lineno, schema or None)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id == "__tablename__":
                value = _string_value(node.value)
                if value is not None:
                    self.seen.add(id(node.value))
                    self.orm(value, node.lineno)
            elif isinstance(target, (ast.Name, ast.Attribute)):
                tname = target.id if isinstance(target, ast.Name) else target.attr
                value = _string_value(node.value)
                if (value is not None and _SQL_NAME.search(tname)
                        and _STARTS_LIKE_SQL.match(value)):
                    self.sql(node.value)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _LOOKS_LIKE_SQL.match(node.value):
            self.sql(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        text = _string_value(node)
        if text is not None and _LOOKS_LIKE_SQL.match(text):
            self.sql(node)
        # fields of an f-string are code, not SQL text
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                self.visit(v.value)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        text = _string_value(node)
        if text is not None:
            if _LOOKS_LIKE_SQL.match(text):
                self.sql(node)
            return
        self.generic_visit(node)


def scan_python(source: str, file: str, result: ScanResult) -> None:
    """Add the table references of one Python source file to result."""
    try:
        tree = ast.parse(source, filename=file)
    except (SyntaxError, ValueError):
        result.unparsable.append(file)
        return
    _PyVisitor(file, result).visit(tree)


def scan_sql(source: str, file: str, result: ScanResult) -> None:
    """Add the table references of one SQL file to result."""
    refs, defined = refs_in_sql(source)
    result.defined |= defined
    for r in refs:
        line = 1 + source.count("\n", 0, r.pos)
        result.refs.append(TableRef(r.name, r.schema, r.exact, file, line))


# --- files -------------------------------------------------------------------------------------

def _files(cfg: CodeReferencesConfig) -> Iterator[tuple[Path, str]]:
    """(path, shown name) of every file to scan; exclude globs match the path under its root."""
    seen: set[Path] = set()
    for root in cfg.paths:
        if root.is_file():
            candidates: list[tuple[Path, str]] = [(root, root.name)]
        elif root.is_dir():
            candidates = []
            for pattern in cfg.include:
                for p in sorted(root.glob(pattern)):
                    if p.is_file():
                        candidates.append((p, p.relative_to(root).as_posix()))
        else:
            from vigil.config import ConfigError

            raise ConfigError(None, "code_references.paths", f"path does not exist: {root}")
        for path, rel in candidates:
            real = path.resolve()
            if real in seen:
                continue
            # match under the root, so a root that itself sits in e.g. venv/ is still scanned
            if any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch("/" + rel, pat)
                   for pat in cfg.exclude):
                continue
            seen.add(real)
            yield path, str(path)


FileCache = dict[str, tuple[tuple[int, int], "ScanResult"]]


def scan_paths(cfg: CodeReferencesConfig, cache: FileCache | None = None) -> ScanResult:
    """Scan every configured file: .py as Python, anything else as SQL.

    With a cache, a file whose size and mtime did not change is not read again.
    """
    result = ScanResult()
    for path, shown in _files(cfg):
        try:
            st = path.stat()
        except OSError:
            result.unparsable.append(shown)
            continue
        if st.st_size > MAX_FILE_BYTES:
            continue
        stamp = (st.st_mtime_ns, st.st_size)
        hit = cache.get(shown) if cache is not None else None
        if hit is not None and hit[0] == stamp:
            one = hit[1]
        else:
            one = ScanResult()
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                result.unparsable.append(shown)
                continue
            if path.suffix == ".py":
                scan_python(text, shown, one)
            else:
                scan_sql(text, shown, one)
            if cache is not None:
                cache[shown] = (stamp, one)
        result.files += 1
        result.refs.extend(one.refs)
        result.defined |= one.defined
        result.unparsable.extend(one.unparsable)
    return result


# --- matching ----------------------------------------------------------------------------------

_SYSTEM_SCHEMAS = {"pg_catalog", "information_schema", "pg_toast", "main", "temp"}


def _is_system(ref: TableRef) -> bool:
    n = ref.name.lower()
    return n.startswith(("pg_", "sqlite_")) or n == "information_schema" or (
        ref.schema is not None and (ref.schema.lower() in _SYSTEM_SCHEMAS
                                    or ref.schema.lower().startswith("pg_")))


def _suggest(name: str, names: list[str]) -> list[str]:
    """A close existing name: very similar, or fairly similar and sharing a word (ai_*)."""
    words = set(name.lower().split("_")) - {""}
    best: list[tuple[float, str]] = []
    for candidate in names:
        ratio = difflib.SequenceMatcher(None, name.lower(), candidate.lower()).ratio()
        shares = bool(words & set(candidate.lower().split("_")))
        if ratio >= 0.75 or (ratio >= 0.5 and shares):
            best.append((ratio, candidate))
    return [max(best)[1]] if best else []


def reference_findings(snap: Snapshot, cfg: CodeReferencesConfig,
                       cache: FileCache | None = None) -> tuple[list[Finding], dict[str, int]]:
    """Findings for unknown tables (with file:line) and, as info, tables no code references."""
    result = scan_paths(cfg, cache)
    fold_all = snap.dialect != "postgresql"  # SQLite and most others ignore identifier case
    # (schema, name) of every relation, relative names resolved against the default schema
    relations: dict[tuple[str, str], str] = {}
    for key, table in snap.tables.items():
        schema, dot, name = key.partition(".")
        if not dot:
            schema, name = snap.default_schema, key
        relations[(schema, name)] = table.kind
    schemas = set(snap.schemas) | {s for s, _ in relations}

    def norm(s: str) -> str:
        return s.lower() if fold_all else s

    by_name: dict[str, list[tuple[str, str]]] = {}
    for schema, name in relations:
        by_name.setdefault(norm(name), []).append((schema, name))
    by_name_ci: dict[str, list[tuple[str, str]]] = {}
    for schema, name in relations:
        by_name_ci.setdefault(name.lower(), []).append((schema, name))

    ignore = [p.lower() for p in cfg.ignore_names]
    defined = {norm(d) for d in result.defined}
    used: set[tuple[str, str]] = set()
    missing: dict[tuple[str, str], TableRef] = {}
    for ref in result.refs:
        if _is_system(ref) or any(fnmatch.fnmatchcase(ref.display.lower(), p) or
                                  fnmatch.fnmatchcase(ref.name.lower(), p) for p in ignore):
            continue
        if ref.schema is not None and norm(ref.schema) not in {norm(s) for s in schemas}:
            continue  # a schema we did not inspect: we cannot tell
        # unquoted SQL names were folded to lower case already; quoted and ORM names are exact
        candidates = by_name.get(norm(ref.name), [])
        if ref.schema is not None:
            candidates = [c for c in candidates if norm(c[0]) == norm(ref.schema)]
        if candidates:
            used.update(candidates)
            continue
        if norm(ref.name) in defined:
            continue
        missing.setdefault((ref.display, ref.location), ref)

    findings: list[Finding] = []
    names = sorted({n for _, n in relations})
    sev = Severity(cfg.missing_severity)
    for (display, location), ref in sorted(missing.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        close = _suggest(ref.name, names)
        hint = f"; did you mean {close[0]}?" if close else ""
        case_hint = ""
        if not fold_all and ref.name.lower() in by_name_ci:
            case_hint = f" (a table {by_name_ci[ref.name.lower()][0][1]!r} exists: case differs)"
        findings.append(Finding(
            rule="unknown_table", severity=sev, subject=display,
            message=f"code references {display}, which is not a table or view in the "
                    f"database{case_hint}{hint}",
            fix=f"fix the name (is it {close[0]}?) or create the table" if close
            else "create the table or fix the query",
            location=location))
    unreferenced = 0
    if cfg.report_unreferenced:
        for (schema, name), kind in sorted(relations.items()):
            if kind != "table" or (schema, name) in used:
                continue
            rel = name if schema == snap.default_schema else f"{schema}.{name}"
            if snap.tables.get(rel) is not None and snap.tables[rel].partition_of:
                continue
            unreferenced += 1
            findings.append(Finding(rule="unreferenced_table", severity=Severity.INFO,
                                    subject=rel, message=f"no scanned code references table {rel}"))
    stats = {"files": result.files, "refs": len(result.refs), "missing": len(missing),
             "unreferenced": unreferenced}
    return findings, stats
