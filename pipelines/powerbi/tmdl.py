"""A strict parser for the TMDL (Tabular Model Definition Language) this project writes.

No TMDL parser that follows the language strictly is installable from PyPI or npm: the
packages there (coop-dax-review, tmdl-parser, powerbi-tmdl-tools, pbi-semantic-doc, ...)
are tolerant line scanners that skip what they do not recognise, so they cannot fail on
a malformed file, and Microsoft's own serializer (TmdlSerializer, in the .NET Tabular
Object Model) ships only on NuGet. This module therefore parses the subset of TMDL that
`pipelines/powerbi/project.py` emits, following Microsoft's published TMDL description and
the files Power BI Desktop itself saves:

- one object per declaration line, `<type> <name>` or `<type> <name> = <expression>`,
  children indented by exactly one more tab than their parent (tabs only);
- a name is bare unless it holds whitespace or one of `. = : '`, in which case it is
  enclosed in single quotes with `''` for a quote inside;
- properties `name: value`, boolean properties written bare (`isHidden`), expression
  properties `name = expression`;
- a multi-line expression starts after a bare `=` and its lines are indented two tabs
  deeper than the line that declares it (as Desktop saves measures, partition sources and
  shared expressions), or is fenced with three backticks;
- descriptions as `///` lines directly above the object they describe.

Every object type and property name is checked against the set this subset allows, every
value against its type, and `check_model` then checks the model as a whole: each table
file named after its table and referenced once from model.tmdl, unique names, one M
partition per table, columns with a type and a source, relationships whose columns exist,
and DAX references (`'table'[column]`, `[measure]`) that resolve. Errors name the file, the
line and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

INDENT = "\t"

# Object types this subset accepts, with the child objects each may hold.
CHILDREN: dict[str, set[str]] = {
    "database": set(),
    "model": {"annotation", "dataAccessOptions"},
    "dataAccessOptions": set(),
    "table": {"column", "measure", "partition", "annotation"},
    "column": {"annotation", "changedProperty"},
    "measure": {"annotation", "changedProperty"},
    "partition": set(),
    "relationship": set(),
    "expression": {"annotation"},
    "annotation": set(),
    "changedProperty": set(),
    "queryGroup": {"annotation"},
}
TOP_LEVEL = {"database", "model", "table", "relationship", "expression", "annotation", "queryGroup", "ref"}
NAMELESS = {"dataAccessOptions"}

DATA_TYPES = ("int64", "double", "decimal", "string", "boolean", "dateTime", "binary", "variant")
SUMMARIZE = ("none", "sum", "count", "min", "max", "average", "distinctCount", "default")

# Property -> value check, per object type. "bool" properties may be written bare.
_TEXT, _BOOL, _INT = "text", "bool", "int"
PROPERTIES: dict[str, dict[str, object]] = {
    "database": {"compatibilityLevel": _INT, "compatibilityMode": ("powerBI", "analysisServices", "unknown"),
                 "language": _INT, "collation": _TEXT},
    "model": {"culture": _TEXT, "defaultPowerBIDataSourceVersion": ("powerBI_V1", "powerBI_V2", "powerBI_V3"),
              "discourageImplicitMeasures": _BOOL, "sourceQueryCulture": _TEXT, "defaultMode": ("import", "directQuery", "dual")},
    "dataAccessOptions": {"legacyRedirects": _BOOL, "returnErrorValuesAsNull": _BOOL, "fastCombine": _BOOL},
    "table": {"lineageTag": _TEXT, "sourceLineageTag": _TEXT, "isHidden": _BOOL, "isPrivate": _BOOL, "dataCategory": _TEXT,
              "excludeFromModelRefresh": _BOOL},
    "column": {"dataType": DATA_TYPES, "formatString": _TEXT, "lineageTag": _TEXT, "sourceLineageTag": _TEXT,
               "summarizeBy": SUMMARIZE, "sourceColumn": _TEXT, "isHidden": _BOOL, "isKey": _BOOL, "isNullable": _BOOL,
               "isUnique": _BOOL, "dataCategory": _TEXT, "sortByColumn": _TEXT, "displayFolder": _TEXT,
               "isAvailableInMdx": _BOOL, "isDefaultLabel": _BOOL, "isNameInferred": _BOOL, "isDataTypeInferred": _BOOL},
    "measure": {"formatString": _TEXT, "displayFolder": _TEXT, "lineageTag": _TEXT, "sourceLineageTag": _TEXT,
                "isHidden": _BOOL, "dataCategory": _TEXT, "isSimpleMeasure": _BOOL},
    "partition": {"mode": ("import", "directQuery", "dual", "default"), "queryGroup": _TEXT},
    "relationship": {"fromColumn": "column_ref", "toColumn": "column_ref", "isActive": _BOOL,
                     "crossFilteringBehavior": ("oneDirection", "bothDirections", "automatic"),
                     "fromCardinality": ("many", "one"), "toCardinality": ("many", "one"),
                     "securityFilteringBehavior": ("oneDirection", "bothDirections", "none"),
                     "joinOnDateBehavior": ("dateAndTime", "datePartOnly"), "relyOnReferentialIntegrity": _BOOL},
    "expression": {"lineageTag": _TEXT, "queryGroup": _TEXT, "kind": ("m",)},
    "queryGroup": {},
    "annotation": {},
    "changedProperty": {},
}
# Expression-valued properties (`name = expression`), per object type.
EXPRESSION_PROPERTIES = {"partition": {"source"}, "measure": {"formatStringDefinition", "detailRowsDefinition"}}
# Objects whose declaration must carry `= expression`, and what follows the `=`.
DEFAULT_EXPRESSION = {"measure": "dax", "expression": "m", "annotation": "text", "changedProperty": "text",
                      "partition": "source_type"}
PARTITION_SOURCES = ("m", "calculated", "entity", "query", "policyRange")

_BARE_NAME = re.compile(r"[^\s'.=:]+")
_PROPERTY = re.compile(r"([A-Za-z][A-Za-z0-9]*)\s*:\s?(.*)")
_EXPRESSION_PROPERTY = re.compile(r"([A-Za-z][A-Za-z0-9]*)\s*=\s?(.*)")


class TmdlError(ValueError):
    """A TMDL file that does not follow the grammar; the message names the file and line."""


@dataclass
class Node:
    """One TMDL object: its type, name, default expression, properties and children."""

    kind: str
    name: str | None
    file: str
    line: int
    expression: str | None = None
    properties: dict[str, str | bool] = field(default_factory=dict)
    expressions: dict[str, str] = field(default_factory=dict)
    children: list["Node"] = field(default_factory=list)
    description: str | None = None
    ref_kind: str | None = None

    def child(self, kind: str) -> list["Node"]:
        """Return the children of one object type, in file order."""
        return [c for c in self.children if c.kind == kind]


def quote_name(name: str) -> str:
    """Return a TMDL object name, quoted when it must be.

    Examples:
        >>> quote_name("fact_gap_table"), quote_name("Rate (shown)"), quote_name("O'Brien")
        ('fact_gap_table', "'Rate (shown)'", "'O''Brien'")
    """
    if _BARE_NAME.fullmatch(name):
        return name
    return "'" + name.replace("'", "''") + "'"


def _read_name(text: str, where: str) -> tuple[str, str]:
    """Split `text` into a leading (possibly quoted) name and the rest."""
    if text.startswith("'"):
        i, out = 1, []
        while i < len(text):
            if text[i] == "'":
                if text[i + 1:i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                return "".join(out), text[i + 1:]
            out.append(text[i])
            i += 1
        raise TmdlError(f"{where}: unterminated quoted name {text!r}")
    match = _BARE_NAME.match(text)
    if not match:
        raise TmdlError(f"{where}: expected an object name, found {text!r}")
    return match.group(0), text[match.end():]


def column_reference(value: str, where: str) -> tuple[str, str]:
    """Split a `table.column` reference (either part may be quoted).

    Examples:
        >>> column_reference("fact_gap_table.month_key", "x"), column_reference("'a b'.'c.d'", "x")
        (('fact_gap_table', 'month_key'), ('a b', 'c.d'))
    """
    table, rest = _read_name(value, where)
    if not rest.startswith("."):
        raise TmdlError(f"{where}: expected table.column, found {value!r}")
    column, rest = _read_name(rest[1:], where)
    if rest:
        raise TmdlError(f"{where}: unexpected text after table.column in {value!r}")
    return table, column


def _depth(line: str, where: str) -> int:
    depth = len(line) - len(line.lstrip(INDENT))
    if line[depth:depth + 1] == " ":
        raise TmdlError(f"{where}: indentation must be tabs only")
    return depth


class _Reader:
    def __init__(self, text: str, file: str) -> None:
        if "\r" in text:
            raise TmdlError(f"{file}: carriage return found; this model is written with LF line ends")
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.file = file
        self.i = 0

    def where(self, i: int | None = None) -> str:
        return f"{self.file}:{(self.i if i is None else i) + 1}"

    def skip_blank(self) -> None:
        while self.i < len(self.lines) and not self.lines[self.i].strip():
            if self.lines[self.i]:
                raise TmdlError(f"{self.where()}: whitespace on a blank line")
            self.i += 1

    def expression(self, first: str, depth: int) -> str:
        """Read an expression that starts after `=` on a line at `depth`."""
        first = first.strip()
        if first == "```":
            body, self.i = [], self.i + 1
            while self.i < len(self.lines):
                line = self.lines[self.i]
                if line.strip() == "```":
                    self.i += 1
                    return "\n".join(body).strip("\n")
                body.append(line[depth + 2:] if line.startswith(INDENT * (depth + 2)) else line.strip())
                self.i += 1
            raise TmdlError(f"{self.where()}: unterminated ``` expression")
        if first:
            self.i += 1
            return first
        self.i += 1
        body_indent, body = INDENT * (depth + 2), []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip() and not line.startswith(body_indent):
                break
            body.append(line[len(body_indent):] if line.strip() else "")
            self.i += 1
        while body and not body[-1]:
            body.pop()
        if not body:
            raise TmdlError(f"{self.where()}: expected an expression indented {depth + 2} tabs after '='")
        return "\n".join(body)

    def nodes(self, depth: int, parent: str | None) -> list[Node]:
        out: list[Node] = []
        while True:
            self.skip_blank()
            if self.i >= len(self.lines):
                return out
            line = self.lines[self.i]
            level = _depth(line, self.where())
            if level < depth:
                return out
            if level > depth:
                raise TmdlError(f"{self.where()}: indented {level} tabs where {depth} were expected")
            description = None
            if line[level:].startswith("///"):
                notes = []
                while self.i < len(self.lines) and self.lines[self.i].startswith(INDENT * depth + "///"):
                    notes.append(self.lines[self.i][depth + 3:].strip())
                    self.i += 1
                description = "\n".join(notes)
                if self.i >= len(self.lines) or not self.lines[self.i].strip() or _depth(self.lines[self.i], self.where()) != depth:
                    raise TmdlError(f"{self.where(self.i - 1)}: a /// description must sit directly above the object it describes")
            if parent is not None and self._is_property(parent, self.lines[self.i][depth:]):
                if description:
                    raise TmdlError(f"{self.where()}: a description cannot describe a property")
                return out
            node = self.node(depth, parent)
            node.description = description
            out.append(node)

    @staticmethod
    def _is_property(parent: str, text: str) -> bool:
        word = re.match(r"[A-Za-z]+", text)
        if not word:
            return False
        name = word.group(0)
        return name in PROPERTIES.get(parent, {}) or name in EXPRESSION_PROPERTIES.get(parent, set())

    def node(self, depth: int, parent: str | None) -> Node:
        where, text = self.where(), self.lines[self.i][depth:]
        kind, _, rest = text.partition(" ")
        allowed = TOP_LEVEL if parent is None else CHILDREN.get(parent, set())
        if kind not in allowed:
            raise TmdlError(f"{where}: '{kind}' is not a property or object this model allows "
                            f"{'at file level' if parent is None else 'in a ' + parent}")
        node = Node(kind=kind, name=None, file=self.file, line=self.i + 1)
        if kind == "ref":
            ref_kind, _, name_text = rest.partition(" ")
            if ref_kind != "table":
                raise TmdlError(f"{where}: only 'ref table' is used by this model, found 'ref {ref_kind}'")
            name, tail = _read_name(name_text, where)
            if tail:
                raise TmdlError(f"{where}: unexpected text after the table name: {tail!r}")
            node.name, node.ref_kind = name, ref_kind
            self.i += 1
            return node
        if kind == "changedProperty":
            if not rest.startswith("= "):
                raise TmdlError(f"{where}: expected 'changedProperty = <property>'")
            node.expression = rest[2:].strip()
            self.i += 1
            return node
        if kind in NAMELESS:
            if rest:
                raise TmdlError(f"{where}: '{kind}' takes no name")
        else:
            node.name, rest = _read_name(rest, where)
        rest = rest.strip()
        expected = DEFAULT_EXPRESSION.get(kind)
        if expected:
            if not rest.startswith("="):
                raise TmdlError(f"{where}: '{kind} {quote_name(node.name or '')}' must be followed by '= ...'")
            value = rest[1:]
            if expected in ("text", "source_type"):
                value = value.strip()
                if not value:
                    raise TmdlError(f"{where}: empty value after '='")
                if expected == "source_type" and value not in PARTITION_SOURCES:
                    raise TmdlError(f"{where}: partition source type must be one of {PARTITION_SOURCES}, found {value!r}")
                node.expression = value
                self.i += 1
            else:
                node.expression = self.expression(value, depth)
        else:
            if rest:
                raise TmdlError(f"{where}: unexpected text after the name: {rest!r}")
            self.i += 1
        self.properties(node, depth + 1)
        node.children = self.nodes(depth + 1, kind)
        # Properties may follow child objects only in Desktop's own order; this subset keeps them first.
        self.skip_blank()
        if self.i < len(self.lines) and _depth(self.lines[self.i], self.where()) > depth:
            raise TmdlError(f"{self.where()}: unexpected line inside '{kind}': {self.lines[self.i].strip()!r}")
        return node

    def properties(self, node: Node, depth: int) -> None:
        allowed, expressions = PROPERTIES.get(node.kind, {}), EXPRESSION_PROPERTIES.get(node.kind, set())
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if not line.strip():
                # A blank line ends the property block only if no property follows it.
                j = self.i
                while j < len(self.lines) and not self.lines[j].strip():
                    j += 1
                if j < len(self.lines) and _depth(self.lines[j], self.where(j)) == depth and \
                        self._is_property(node.kind, self.lines[j][depth:]):
                    self.skip_blank()
                    continue
                return
            if _depth(line, self.where()) != depth:
                return
            text, where = line[depth:], self.where()
            word = re.match(r"[A-Za-z]+", text)
            name = word.group(0) if word else ""
            if name in expressions and _EXPRESSION_PROPERTY.fullmatch(text):
                _, value = _EXPRESSION_PROPERTY.fullmatch(text).groups()
                if name in node.expressions:
                    raise TmdlError(f"{where}: '{name}' given twice")
                node.expressions[name] = self.expression(value, depth)
                continue
            if name not in allowed:
                return
            kind = allowed[name]
            if text == name:
                if kind != _BOOL:
                    raise TmdlError(f"{where}: '{name}' needs a value ('{name}: ...')")
                value: str | bool = True
            else:
                match = _PROPERTY.fullmatch(text)
                if not match or match.group(1) != name:
                    raise TmdlError(f"{where}: expected '{name}: <value>', found {text!r}")
                raw = match.group(2)
                if raw != raw.strip() or not raw:
                    raise TmdlError(f"{where}: '{name}' has an empty value or stray spaces")
                value = _check_value(name, raw, kind, where)
            if name in node.properties:
                raise TmdlError(f"{where}: '{name}' given twice")
            node.properties[name] = value
            self.i += 1


def _check_value(name: str, raw: str, kind: object, where: str) -> str | bool:
    if kind == _BOOL:
        if raw not in ("true", "false"):
            raise TmdlError(f"{where}: '{name}' must be true or false, found {raw!r}")
        return raw == "true"
    if kind == _INT:
        if not re.fullmatch(r"-?\d+", raw):
            raise TmdlError(f"{where}: '{name}' must be an integer, found {raw!r}")
        return raw
    if kind == "column_ref":
        column_reference(raw, where)
        return raw
    if isinstance(kind, tuple) and raw not in kind:
        raise TmdlError(f"{where}: '{name}' must be one of {', '.join(kind)}, found {raw!r}")
    return raw


def parse_text(text: str, file: str) -> list[Node]:
    """Parse one TMDL file's text into its top-level objects.

    Examples:
        >>> [n.name for n in parse_text("table t\\n\\tcolumn c\\n\\t\\tdataType: int64\\n", "t.tmdl")[0].children]
        ['c']
    """
    reader = _Reader(text, file)
    nodes = reader.nodes(0, None)
    if reader.i < len(reader.lines):
        raise TmdlError(f"{reader.where()}: unexpected line {reader.lines[reader.i]!r}")
    return nodes


@dataclass
class Model:
    """A parsed semantic model folder (`<name>.SemanticModel/definition`)."""

    database: Node
    model: Node
    refs: list[str]
    tables: dict[str, Node]
    relationships: list[Node]
    expressions: dict[str, Node]

    def columns(self, table: str) -> dict[str, Node]:
        """Return column name -> column of a table."""
        return {c.name: c for c in self.tables[table].child("column")}

    def measures(self) -> dict[str, tuple[str, Node]]:
        """Return measure name -> (its table, the measure)."""
        return {m.name: (t, m) for t, node in self.tables.items() for m in node.child("measure")}


def parse_model(definition: Path) -> Model:
    """Parse every TMDL file of a semantic model's `definition` folder and check the whole.

    Arguments:
        definition: the `definition` folder (database.tmdl, model.tmdl, expressions.tmdl,
            relationships.tmdl, tables/*.tmdl).

    Returns:
        The parsed model.

    Raises:
        TmdlError: naming the file and line, when any file breaks the grammar or the model
            is inconsistent.
    """
    def load(path: Path) -> list[Node]:
        return parse_text(path.read_text(encoding="utf-8"), str(path.relative_to(definition.parent)))

    known = {"database.tmdl", "model.tmdl", "expressions.tmdl", "relationships.tmdl", "tables"}
    strays = sorted(p.name for p in definition.iterdir() if p.name not in known)
    if strays:
        raise TmdlError(f"{definition}: unexpected files {strays}")
    database = _one(load(definition / "database.tmdl"), "database", definition / "database.tmdl")
    model_nodes = load(definition / "model.tmdl")
    model = _one([n for n in model_nodes if n.kind == "model"], "model", definition / "model.tmdl")
    for node in model_nodes:
        if node.kind not in ("model", "ref", "annotation", "queryGroup"):
            raise TmdlError(f"{node.file}:{node.line}: '{node.kind}' belongs in its own file, not model.tmdl")
    refs = [n.name for n in model_nodes if n.kind == "ref"]
    expressions: dict[str, Node] = {}
    if (definition / "expressions.tmdl").exists():
        for node in load(definition / "expressions.tmdl"):
            _kind(node, "expression")
            _unique(expressions, node)
    relationships: list[Node] = []
    if (definition / "relationships.tmdl").exists():
        relationships = load(definition / "relationships.tmdl")
        for node in relationships:
            _kind(node, "relationship")
    tables: dict[str, Node] = {}
    for path in sorted((definition / "tables").glob("*")):
        nodes = load(path)
        table = _one(nodes, "table", path)
        if path.name != f"{table.name}.tmdl":
            raise TmdlError(f"{path}: a table file is named after its table ('{table.name}.tmdl')")
        _unique(tables, table)
    result = Model(database, model, refs, tables, relationships, expressions)
    check_model(result)
    return result


def _one(nodes: list[Node], kind: str, path: Path) -> Node:
    if len(nodes) != 1 or nodes[0].kind != kind:
        raise TmdlError(f"{path}: expected exactly one '{kind}' object, found {[n.kind for n in nodes]}")
    return nodes[0]


def _kind(node: Node, kind: str) -> None:
    if node.kind != kind:
        raise TmdlError(f"{node.file}:{node.line}: only '{kind}' objects belong in this file, found '{node.kind}'")


def _unique(seen: dict[str, Node], node: Node) -> None:
    if node.name in seen:
        raise TmdlError(f"{node.file}:{node.line}: '{node.name}' is declared twice")
    seen[node.name] = node


_DAX_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"]|"")*")|(?P<comment>//[^\n]*|--[^\n]*|/\*.*?\*/)"""
    r"""|(?P<ref>(?:'(?P<qtable>(?:[^']|'')+)'|(?P<table>[A-Za-z_][A-Za-z0-9_]*))?\[(?P<column>[^\]]+)\])"""
    r"""|'(?P<onlytable>(?:[^']|'')+)'|(?P<open>[(])|(?P<close>[)])""",
    re.S,
)


def dax_references(expression: str, where: str) -> list[tuple[str | None, str | None]]:
    """Return the (table, name) references of a DAX expression; strings and comments are skipped.

    A column is (table, column), a measure (None, measure), a quoted table alone (table, None).
    Raises TmdlError when parentheses do not balance or a string is left open.

    Examples:
        >>> dax_references("DIVIDE(SUM('fact x'[n]), [Rate]) + COUNTROWS('t') // [not this]", "x")
        [('fact x', 'n'), (None, 'Rate'), ('t', None)]
    """
    refs, depth, last = [], 0, 0
    for match in _DAX_TOKEN.finditer(expression):
        gap = expression[last:match.start()]
        if '"' in gap or "'" in gap or "[" in gap or "]" in gap:
            raise TmdlError(f"{where}: unbalanced quote or bracket in DAX near {gap.strip()[:40]!r}")
        last = match.end()
        if match.group("open"):
            depth += 1
        elif match.group("close"):
            depth -= 1
            if depth < 0:
                raise TmdlError(f"{where}: ')' without '(' in DAX")
        elif match.group("ref"):
            table = match.group("qtable") or match.group("table")
            refs.append((table.replace("''", "'") if table else None, match.group("column")))
        elif match.group("onlytable"):
            refs.append((match.group("onlytable").replace("''", "'"), None))
    tail = expression[last:]
    if '"' in tail or "'" in tail or "[" in tail or "]" in tail:
        raise TmdlError(f"{where}: unbalanced quote or bracket in DAX near {tail.strip()[:40]!r}")
    if depth:
        raise TmdlError(f"{where}: {depth} '(' left open in DAX")
    return refs


def check_model(model: Model) -> None:
    """Check a parsed model as a whole; raise TmdlError naming the first problem."""
    if set(model.refs) != set(model.tables) or len(model.refs) != len(set(model.refs)):
        raise TmdlError(f"model.tmdl: 'ref table' entries {model.refs} must name each table file exactly once "
                        f"(tables: {sorted(model.tables)})")
    level = model.database.properties.get("compatibilityLevel")
    if level is None or int(level) < 1550:
        raise TmdlError("database.tmdl: compatibilityLevel of at least 1550 is needed for this model")
    tags: dict[str, str] = {}
    measures: dict[str, str] = {}
    for name, table in model.tables.items():
        columns = table.child("column")
        if not columns:
            raise TmdlError(f"{table.file}: table '{name}' has no columns")
        partitions = table.child("partition")
        if len(partitions) != 1 or partitions[0].expression != "m" or "source" not in partitions[0].expressions:
            raise TmdlError(f"{table.file}: table '{name}' needs exactly one M partition with a source")
        _m_balanced(partitions[0].expressions["source"], f"{table.file}:{partitions[0].line}")
        seen: set[str] = set()
        for node in [table, *columns, *table.child("measure")]:
            tag = node.properties.get("lineageTag")
            if tag:
                if tag in tags:
                    raise TmdlError(f"{node.file}:{node.line}: lineageTag {tag} also used by {tags[tag]}")
                tags[str(tag)] = f"{name}.{node.name}"
        for column in columns:
            if column.name in seen:
                raise TmdlError(f"{column.file}:{column.line}: column '{column.name}' declared twice")
            seen.add(column.name)
            for needed in ("dataType", "sourceColumn"):
                if needed not in column.properties:
                    raise TmdlError(f"{column.file}:{column.line}: column '{column.name}' has no {needed}")
            sort_by = column.properties.get("sortByColumn")
            if sort_by and sort_by not in {c.name for c in columns}:
                raise TmdlError(f"{column.file}:{column.line}: sortByColumn '{sort_by}' is not a column of '{name}'")
        for measure in table.child("measure"):
            if measure.name in measures or measure.name in seen:
                raise TmdlError(f"{measure.file}:{measure.line}: measure '{measure.name}' clashes with another name")
            measures[measure.name] = name
    for measure_name, table_name in measures.items():
        measure = next(m for m in model.tables[table_name].child("measure") if m.name == measure_name)
        for text in [measure.expression or "", *measure.expressions.values()]:
            for table, ref in dax_references(text, f"{measure.file}:{measure.line}"):
                if table is None:
                    if ref not in measures:
                        raise TmdlError(f"{measure.file}:{measure.line}: [{ref}] in '{measure_name}' is not a measure")
                elif ref is None:
                    if table not in model.tables:
                        raise TmdlError(f"{measure.file}:{measure.line}: table '{table}' in '{measure_name}' does not exist")
                elif table not in model.tables or ref not in model.columns(table):
                    raise TmdlError(f"{measure.file}:{measure.line}: '{table}'[{ref}] in '{measure_name}' does not exist")
    pairs = set()
    for rel in model.relationships:
        ends = []
        for side in ("fromColumn", "toColumn"):
            if side not in rel.properties:
                raise TmdlError(f"{rel.file}:{rel.line}: relationship '{rel.name}' has no {side}")
            table, column = column_reference(str(rel.properties[side]), f"{rel.file}:{rel.line}")
            if table not in model.tables or column not in model.columns(table):
                raise TmdlError(f"{rel.file}:{rel.line}: {table}.{column} does not exist")
            ends.append((table, column))
        if ends[0][0] == ends[1][0]:
            raise TmdlError(f"{rel.file}:{rel.line}: a relationship joins two different tables")
        pair = (ends[0][0], ends[1][0])
        if rel.properties.get("isActive", True) and pair in pairs:
            raise TmdlError(f"{rel.file}:{rel.line}: a second active relationship between {pair[0]} and {pair[1]}")
        pairs.add(pair)
    for name, node in model.expressions.items():
        _m_balanced(node.expression or "", f"{node.file}:{node.line}")


def _m_balanced(text: str, where: str) -> None:
    """Check that an M expression's strings close and its brackets balance."""
    stack, i, closers = [], 0, {")": "(", "]": "[", "}": "{"}
    while i < len(text):
        ch = text[i]
        if ch == '"':
            end = i + 1
            while True:
                end = text.find('"', end)
                if end < 0:
                    raise TmdlError(f"{where}: unterminated string in M")
                if text[end + 1:end + 2] == '"':
                    end += 2
                    continue
                break
            i = end + 1
            continue
        if text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
            continue
        if ch in "([{":
            stack.append(ch)
        elif ch in closers:
            if not stack or stack.pop() != closers[ch]:
                raise TmdlError(f"{where}: unbalanced '{ch}' in M")
        i += 1
    if stack:
        raise TmdlError(f"{where}: '{stack[-1]}' left open in M")
