"""Which statements the warehouse host runs for its callers: only ones that stay inside the
engine.

chDB runs table functions (``file()``, ``url()``, ``s3()``, ``remote()``, …) and ``INTO OUTFILE``
with the rights of the process that hosts it (FIELD-NOTES.md). The host's readers are read-only
connections, which ClickHouse itself keeps from table functions; this guard is the second wall,
and the only one for ``/command`` (DDL needs a writable connection) and for the reads a
read-only connection still allows (the scalar ``file()``, ``INTO OUTFILE``).

The guard judges ClickHouse's own parse, never the caller's text: the statement is first
re-printed by ``formatQuerySingleLine`` (which refuses several statements in one), and that
canonical text is both what :func:`refusal` reads with its ``EXPLAIN AST`` and what runs.

>>> ast = ["SelectWithUnionQuery (children 1)", " ExpressionList (children 1)",
...        "  SelectQuery (children 2)", "   ExpressionList (children 1)", "    Asterisk",
...        "   TablesInSelectQuery (children 1)",
...        "    TablesInSelectQueryElement (children 1)", "     TableExpression (children 1)",
...        "      Function file (children 1)", "       ExpressionList (children 1)",
...        "        Literal '/etc/hostname'"]
>>> refusal("SELECT * FROM file('/etc/hostname')", ast, "query", frozenset({"file"}))
'the table function file() reads outside the warehouse'
>>> ast[-3:] = ["      Function numbers (children 1)", "       ExpressionList (children 1)",
...             "        Literal UInt64_3"]
>>> refusal("SELECT * FROM numbers(3)", ast, "query", frozenset({"file", "numbers"})) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Endpoint = Literal["query", "command"]

# Table functions that generate rows or read the engine's own tables: nothing outside it.
SAFE_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generaterandom", "null", "view"}
    | {"generate_series", "generateseries", "merge", "format", "one"}
)
# Functions that are not table functions yet reach the file system.
OUTSIDE_FUNCTIONS = frozenset({"file", "disk"})
# Table engines that keep their data inside the engine's own directory.
LOCAL_ENGINES = frozenset({"memory", "null", "log", "tinylog", "stripelog", "set", "join"})

ROOTS: dict[Endpoint, frozenset[str]] = {
    "query": frozenset(
        {"SelectWithUnionQuery", "ShowTables", "DescribeQuery", "ExistsTableQuery"}
        | {"ExistsDatabaseQuery", "ExistsViewQuery", "ShowCreateTableQuery"}
        | {"ShowCreateDatabaseQuery", "ShowCreateViewQuery"}
    ),
    "command": frozenset(
        {"CreateQuery", "AlterQuery", "DropQuery", "OptimizeQuery", "TruncateQuery", "Rename"}
    ),
}
# Parents under which a Function node names a table function (an engine is under "Storage",
# from the line "Storage definition").
_TABLE_PARENTS = frozenset({"TableExpression", "InsertQuery", "CreateQuery"})
_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"")
_FILE_CLAUSES = re.compile(r"\b(?:INTO\s+OUTFILE|FROM\s+INFILE|DICTIONARY)\b", re.IGNORECASE)


@dataclass(frozen=True)
class AstNode:
    """One line of ``EXPLAIN AST``: its depth, its kind and the name after the kind.

    >>> AstNode.parse("  Function file (children 1)")
    AstNode(depth=2, kind='Function', name='file')
    """

    depth: int
    kind: str
    name: str

    @classmethod
    def parse(cls, line: str) -> AstNode:
        body = line.lstrip(" ")
        words = re.sub(r"\s*\(children \d+\)$", "", body).split()
        return cls(len(line) - len(body), words[0] if words else "", " ".join(words[1:]))


def _with_parents(ast: Sequence[str]) -> list[tuple[AstNode, str]]:
    """Each node with its parent's kind."""
    stack: list[AstNode] = []
    nodes = []
    for line in ast:
        if not line.strip():
            continue
        node = AstNode.parse(line)
        while stack and stack[-1].depth >= node.depth:
            stack.pop()
        nodes.append((node, stack[-1].kind if stack else ""))
        stack.append(node)
    return nodes


def _engine_is_local(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith("mergetree") or lowered in LOCAL_ENGINES


def refusal(
    canonical: str, ast: Sequence[str], endpoint: Endpoint, table_functions: frozenset[str]
) -> str | None:
    """Why the statement must not run (None: it may). ``canonical`` is the statement as
    ``formatQuerySingleLine`` printed it, ``ast`` its ``EXPLAIN AST`` lines, ``table_functions``
    the engine's table function names in lower case (``system.table_functions``)."""
    nodes = _with_parents(ast)
    if not nodes:
        return "an empty statement"
    root = nodes[0][0].kind
    if root not in ROOTS[endpoint]:
        allowed = ", ".join(sorted(ROOTS[endpoint]))
        return f"/{endpoint} runs only {allowed} statements, not {root}"
    clause = _FILE_CLAUSES.search(_LITERAL.sub("''", canonical))
    if clause:
        return f"{clause.group(0).upper()} reaches outside the warehouse"
    denied = (table_functions - SAFE_TABLE_FUNCTIONS) | OUTSIDE_FUNCTIONS
    for node, parent in nodes:
        if node.kind != "Function":
            continue
        name = node.name.lower()
        if parent == "Storage" and not _engine_is_local(node.name):
            return f"the table engine {node.name} keeps data outside the warehouse"
        if parent in _TABLE_PARENTS and name not in SAFE_TABLE_FUNCTIONS:
            return f"the table function {node.name}() reads outside the warehouse"
        if name in denied:
            return f"the function {node.name}() reaches outside the warehouse"
    return None
