"""Converting a plain table into a partitioned one online, without copying a row (`convert: attach`): what refuses
it, the plan of its steps, and carrying them out under the ladder.

The table becomes the first partition, [MINVALUE, cutover), of a new partitioned parent that takes its name. A
CHECK constraint added NOT VALID and validated beforehand (SHARE UPDATE EXCLUSIVE: writers go on) proves the
bound, so the ATTACH scans nothing; the swap is one short transaction. Every step is found done or not done on the
catalog itself (the named CHECK and its validation, the parent's relkind), so an interrupted conversion is finished
by the next run; the swap writes the partition_log row of the legacy partition in the same transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

from .model import Bounds, KeyType, KeyValue, TableRef, iso
from .naming import Taken, fit
from .spec import TableSpec
from .survey import VIEW_LOCK, Survey
from .encoded import encoding_problem
from .timeline import Grid, space_for, window
from .widths import IdSpace, WidthGrid

CHECK_SUFFIX = "_partman_cutover"
LEGACY_SUFFIX = "_legacy"


class StepKind(str, Enum):
    CHECK = "check"
    VALIDATE = "validate"
    SWAP = "swap"
    VALIDATE_FK = "validate_fk"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    what: str  # one line for the plan: the statement, or what the transaction does
    lock: str  # what it locks and how long it may wait

    def to_dict(self) -> dict[str, str]:
        return {"step": self.kind.value, "what": self.what, "lock": self.lock}


@dataclass(frozen=True)
class Conversion:
    """The plan of one table's conversion: the steps still to do, in order."""

    legacy: TableRef  # the name the table takes as the first partition (the table itself when finishing)
    cutover: Optional[KeyValue]  # the legacy partition covers [MINVALUE, cutover); None when finishing
    check: str  # the CHECK constraint proving the bound
    steps: tuple[Step, ...]
    carried: tuple[str, ...] = ()  # what follows the table to its new parent, for the reviewer

    @property
    def bounds(self) -> Bounds:
        return Bounds(None, self.cutover)

    def to_dict(self) -> dict[str, Any]:
        return {"legacy": str(self.legacy), "cutover": iso(self.cutover), "check": self.check,
                "steps": [s.to_dict() for s in self.steps], "carried": list(self.carried)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], key_type: Optional[KeyType]) -> "Conversion":
        from .plan import parse_key

        steps = tuple(Step(StepKind(s["step"]), s["what"], s["lock"]) for s in d["steps"])
        return cls(TableRef.parse(d["legacy"]), parse_key(d["cutover"], key_type), d["check"], steps, tuple(d["carried"]))


def finishing(table: TableRef, unproven: tuple[tuple[TableRef, str], ...]) -> Conversion:
    """What is left of a conversion whose swap committed: proving the foreign keys it re-pointed NOT VALID."""
    steps = tuple(Step(StepKind.VALIDATE_FK, f"ALTER TABLE {ref} VALIDATE CONSTRAINT {name} (left NOT VALID by an"
                       " interrupted conversion)", f"SHARE UPDATE EXCLUSIVE on {ref}: writers go on")
                  for ref, name in unproven)
    return Conversion(table, None, check_name(table), steps)


def check_name(table: TableRef) -> str:
    return fit(table.name, CHECK_SUFFIX)


def plan(spec: TableSpec, survey: Survey, now, taken: Taken) -> tuple[Optional[Conversion], list[str]]:
    """The conversion of spec's table as its survey shows it, or why it cannot be done (one line per object,
    each with its fix). Pure: the survey was read in the plan's snapshot."""
    name = check_name(spec.table)
    existing = survey.check(name)
    errors = refusals(spec, survey)
    if errors:
        if existing is not None:
            errors.append(f"{spec.table}: constraint {name}, from an earlier attempt, is still on the table and refuses"
                          f" rows past its bound; fix what is named here and apply again, or ALTER TABLE {spec.table}"
                          f" DROP CONSTRAINT {name}")
        return None, errors
    cutover = check_bound(existing.definition, spec.partition_key, survey.key_type) if existing else None
    if existing and cutover is None:
        return None, [f"{spec.table}: constraint {name} exists but is not partman's cutover check ({existing.definition});"
                      f" fix: ALTER TABLE {spec.table} DROP CONSTRAINT {name}"]
    cutover = cutover or choose_cutover(spec, survey, now)
    legacy = _free(TableRef(spec.table.schema, fit(spec.table.name, LEGACY_SUFFIX)), taken)
    steps = []
    key = spec.partition_key
    if existing is None:
        proof = f"{key} < {iso(cutover)}" if survey.key_not_null else f"{key} IS NOT NULL AND {key} < {iso(cutover)}"
        steps.append(Step(StepKind.CHECK, f"ALTER TABLE {spec.table} ADD CONSTRAINT {name} CHECK ({proof}) NOT VALID:"
                          " from here on, inserts past the cutover" + ("" if survey.key_not_null else " or without a key")
                          + " are refused", f"ACCESS EXCLUSIVE on {spec.table} for an instant; waits at most one ladder step"))
    if existing is None or not existing.validated:
        rows = f" (~{survey.rows_estimate:,} rows)" if survey.rows_estimate is not None else " (no statistics yet)"
        steps.append(Step(StepKind.VALIDATE, f"ALTER TABLE {spec.table} VALIDATE CONSTRAINT {name}: reads every row{rows}",
                          f"SHARE UPDATE EXCLUSIVE on {spec.table}: writers and readers go on"))
    carried = carried_over(survey, name)
    others = "".join(f", {mode} on {ref}" for ref, mode in survey.others_locked() if mode != VIEW_LOCK)
    steps.append(Step(
        StepKind.SWAP,
        f"rename {spec.table} to {legacy.name}, create the partitioned {spec.table}, attach {legacy.name} FOR VALUES"
        f" FROM (MINVALUE) TO ({iso(cutover)}) without a scan" + (f"; carry over {', '.join(carried)}" if carried else ""),
        f"one transaction: ACCESS EXCLUSIVE on {spec.table}{others}"
        + "".join(f", ACCESS EXCLUSIVE on the view {v.ref} (re-created)" for v in survey.views)
        + "; each lock waits at most one ladder step"))
    for fk in survey.incoming:
        steps.append(Step(StepKind.VALIDATE_FK, f"ALTER TABLE {fk.table} VALIDATE CONSTRAINT {fk.name} (re-pointed at the"
                          " new parent NOT VALID in the swap)", f"SHARE UPDATE EXCLUSIVE on {fk.table}: writers go on"))
    return Conversion(legacy, cutover, name, tuple(steps), carried), []


def choose_cutover(spec: TableSpec, survey: Survey, now) -> KeyValue:
    """The first boundary at or after the premake horizon, or after the largest key if that lies further.

    From the moment the CHECK exists until the swap, a row at or after the cutover cannot be inserted; after
    the swap, partitions from the cutover on take them. The horizon is the furthest a managed table accepts
    rows anyway, so no insert that partman's management would accept fails during the conversion, and the
    largest key (a booking a year ahead) always stays inside the legacy partition."""
    if spec.width is not None:  # an id table: from its mark, the sequence's value or the largest key
        known = [v for v in (survey.sequence_value, survey.max_key) if v is not None]
        grid = WidthGrid(spec.width, spec.origin, IdSpace(survey.key_type, mark=max(known, default=spec.origin)))
    else:
        grid = Grid(spec.interval, space_for(survey.key_type, spec.timezone, spec.key_encoding))
    cutover = window(grid, now, spec.premake).end
    if survey.max_key is not None and survey.max_key >= cutover:
        cutover = grid.slot(grid.floor(survey.max_key)).end
    return cutover


# pg_get_constraintdef of partman's CHECK: ((key < v)), or (((key IS NOT NULL) AND (key < v))) for a nullable key,
# which the ATTACH needs to prove the partition constraint (it includes key IS NOT NULL) without a scan.
_VALUE = r"(?P<value>'(?:[^']|'')*'(?:::[a-z ]+)?|-?\d+)"  # an integer's bare: (id < 5000)
_NAME = r'(?:"(?:[^"]|"")+"|[^\s()"]+)'  # an identifier as the server prints it: bare, or quoted with "" inside
_CHECK_DEFS = (re.compile(r"^CHECK \(\((?P<key>" + _NAME + r") < " + _VALUE + r"\)\)$"),
               re.compile(r"^CHECK \(\(\((?P<nn>" + _NAME + r") IS NOT NULL\) AND \((?P<key>" + _NAME + r") < "
                          + _VALUE + r"\)\)\)$"))


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def check_bound(definition: str, key: str, key_type: Optional[KeyType]) -> Optional[KeyValue]:
    """The cutover that partman's CHECK (pg_get_constraintdef, TimeZone UTC) proves, or None if it is not one."""
    from .catalog import parse_value

    text = definition.removesuffix(" NOT VALID")
    m = next((m for m in (r.match(text) for r in _CHECK_DEFS) if m), None)
    names = {_unquote(n) for k, n in m.groupdict(key).items() if k != "value"} if m else set()
    if m is None or key_type is None or names != {key}:
        return None
    try:
        return parse_value(m.group("value"), key_type)
    except ValueError:
        return None


def carried_over(survey: Survey, check: str = "") -> tuple[str, ...]:
    counts = [
        (len(survey.indexes), "index", "indexes"),
        (len([c for c in survey.constraints if c.kind == "c" and not c.incoming and c.name != check]), "check constraint",
         "check constraints"),
        (len(survey.outgoing), "foreign key to another table", "foreign keys to other tables"),
        (len(survey.incoming), "foreign key into it", "foreign keys into it"),
        (len(survey.views), "view", "views"),
        (len(survey.triggers), "trigger", "triggers"),
        (len(survey.policies), "policy", "policies"),
        (len(survey.grants), "grant", "grants"),
        (len(survey.sequences), "sequence", "sequences"),
    ]
    return tuple(f"{n} {one if n == 1 else many}" for n, one, many in counts if n)


def _free(ref: TableRef, taken: Taken) -> TableRef:
    candidate, n = ref, 1
    while candidate in taken:
        n += 1
        candidate = TableRef(ref.schema, fit(ref.name.removesuffix(LEGACY_SUFFIX), f"{LEGACY_SUFFIX}_{n}"))
    taken.add(candidate)
    return candidate


def refusals(spec: TableSpec, s: Survey) -> list[str]:
    """Why this table cannot be converted as it is, one line per object, each naming it and the fix."""
    t, key = spec.table, spec.partition_key
    if s.key_attnum is None:
        return [f"{t}: column {key} does not exist; fix partition_key in {spec.source}"]
    if s.key_type is None or encoding_problem(spec.key_encoding, s.key_type, spec.width is not None):
        why = encoding_problem(spec.key_encoding, s.key_type, spec.width is not None) if s.key_type else None
        return [f"{t}: partition key {key} has type {s.key_type_name}; "
                + (why or "partman converts timestamptz, timestamp and date keys, integer ids (width), and integer or"
                   " uuid keys that hold a time (key_encoding)")]
    found = _table_refusals(t, key, s) + _index_refusals(t, key, s) + _dependent_refusals(t, s)
    return found


def _table_refusals(t: TableRef, key: str, s: Survey) -> list[str]:
    found = []
    if s.persistence != "p":
        found.append(f"{t} is UNLOGGED or temporary, which a partitioned parent cannot be; fix: ALTER TABLE {t} SET LOGGED")
    if s.typed:
        found.append(f"{t} is a typed table (CREATE TABLE … OF type); fix: ALTER TABLE {t} NOT OF")
    if s.inherits:
        found.append(f"{t} is part of an inheritance tree; fix: ALTER TABLE … NO INHERIT its parents and children")
    if s.key_infinite:
        found.append(f"{t}: a row's {key} is 'infinity', past any partition bound; fix: UPDATE those rows to a real"
                     f" value (or DELETE them) WHERE {key} = 'infinity'")
    if not s.owner_may_create:
        found.append(f"{t}: its owner {s.owner} has no CREATE privilege on schema {t.schema}, which the new parent"
                     f" (given to the owner) needs; fix: GRANT CREATE ON SCHEMA {t.schema} TO {s.owner}")
    for seq in s.sequences:
        if seq.identity and seq.used_by:
            found.append(f"{t}: the identity sequence {seq.ref} of column {seq.column} is also used by {seq.used_by[0]};"
                         " the conversion replaces the identity and would drop it; fix: give that default a sequence"
                         " of its own")
    for ref in s.not_owned:
        found.append(f"{t}: the conversion alters {ref}, which the connected role does not own; fix: run partman as"
                     f" its owner (or a member of that role), or GRANT the owner's role to it")
    if s.key_has_nulls:
        found.append(f"{t}: partition key {key} is nullable and holds NULLs, which no range partition can hold; fix:"
                     f" UPDATE or DELETE the rows WHERE {key} IS NULL, then ALTER TABLE {t} ALTER COLUMN {key} SET NOT NULL")
    if s.replica_identity == "i":
        found.append(f"{t}: REPLICA IDENTITY USING INDEX is not carried over; fix: ALTER TABLE {t} REPLICA IDENTITY DEFAULT"
                     " before, and set it on the partitions after")
    for p in s.publications:
        found.append(f"{t} is published by {p}, which would publish the legacy partition under its new name; fix:"
                     f" ALTER PUBLICATION {p} SET (publish_via_partition_root = true), and for a FOR TABLE"
                     f" publication DROP TABLE {t} before the conversion and ADD TABLE {t} after")
    return found


def _index_refusals(t: TableRef, key: str, s: Survey) -> list[str]:
    found = []
    for ix in s.indexes:
        if not ix.valid:
            found.append(f"{t}: index {ix.name} is invalid (an interrupted CREATE INDEX CONCURRENTLY); fix: DROP INDEX"
                         f" CONCURRENTLY {t.schema}.{ix.name}, or REINDEX it")
        elif ix.constraint == "x":
            found.append(f"{t}: exclusion constraint {ix.name} cannot be carried over to a partitioned table; fix: drop it"
                         " before, and add it to the partitions after")
        elif ix.unique and not ix.covers_key:
            what = {"p": "primary key", "u": "unique constraint"}.get(ix.constraint or "", "unique index")
            found.append(f"{t}: {what} {ix.name} does not include the partition key {key}, and a partitioned table's"
                         f" unique keys must; fix: add {key} to it (CREATE UNIQUE INDEX CONCURRENTLY on its columns and"
                         f" {key}, then swap the {what} to it with ALTER TABLE … ADD CONSTRAINT … USING INDEX), and to"
                         " the foreign keys that reference it")
    for c in s.constraints:
        if not c.validated and c.kind in ("c", "f") and not c.name.endswith(CHECK_SUFFIX):
            where = f" of {c.table}" if c.incoming else ""
            found.append(f"{t}: constraint {c.name}{where} is NOT VALID, which the new parent cannot take over as it"
                         f" is; fix: ALTER TABLE {c.table} VALIDATE CONSTRAINT {c.name} (it does not block writers), or"
                         " drop it")
        if c.incoming and c.from_partitioned and s.server_version < 180000:
            found.append(f"{t}: foreign key {c.name} of the partitioned table {c.table} cannot be re-pointed NOT VALID"
                         " before PostgreSQL 18; fix: drop it before the conversion and add it again after")
        if c.kind == "c" and "NO INHERIT" in c.definition:
            found.append(f"{t}: check constraint {c.name} is NO INHERIT, which a partitioned table cannot have; fix:"
                         " drop it or make it inheritable")
        if c.incoming and c.table == t:
            found.append(f"{t}: foreign key {c.name} references the table itself; fix: drop it before the conversion"
                         " and add it again after")
        elif c.incoming and not c.covers_key:
            found.append(f"{t}: foreign key {c.name} of {c.table} references it without the partition key {key}; fix:"
                         f" add {key} to the referencing and referenced columns")
    return found


def _dependent_refusals(t: TableRef, s: Survey) -> list[str]:
    found = [f"{t}: materialized view {m} selects from it and cannot be re-pointed; fix: DROP it before the"
             " conversion and create it again after" for m in s.matviews]
    found += [f"{t}: rule {r} on it cannot be carried over; fix: drop it before and create it again after" for r in s.rules]
    for tr in s.triggers:
        if tr.constraint or tr.transition or tr.enabled != "O":
            why = ("a constraint trigger" if tr.constraint else "uses transition tables" if tr.transition
                   else "not an ordinary enabled trigger")
            found.append(f"{t}: trigger {tr.name} is {why}, which is not carried over; fix: drop it before the"
                         " conversion and create it on the new parent after")
    found += [f"{t}: {o} depends on it and cannot be carried over; fix: drop it before the conversion and create"
              " it again after" for o in s.others]
    return found
