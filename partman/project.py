"""The project file (partman.yaml): environments and where each one's database is."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Optional

from .errors import SpecError
from .spec import identifier_problem
from .yamldoc import load, schema_errors, validator_for

PROJECT_FILE = "partman.yaml"


@dataclass(frozen=True)
class Environment:
    name: str
    database: Optional[str] = None  # "embedded"
    database_url_env: Optional[str] = None
    protected: bool = False


@dataclass(frozen=True)
class Project:
    path: Optional[Path] = None
    environments: dict[str, Environment] = field(default_factory=dict)
    state_schema: str = "public"

    @property
    def root(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def env_names(self) -> Optional[list[str]]:
        return sorted(self.environments) if self.path else None


def find(spec_paths: Iterable[Path]) -> Optional[Path]:
    """partman.yaml in the working directory, else in the nearest ancestor of the first spec path, else in the
    nearest ancestor of the working directory (as git finds its repository: `partman dev status` from specs/)."""
    candidates = [Path.cwd()]
    for p in spec_paths:
        candidates.extend(p.resolve().parents if p.is_file() else [p.resolve(), *p.resolve().parents])
        break
    candidates.extend(Path.cwd().resolve().parents)
    for directory in candidates:
        if (directory / PROJECT_FILE).is_file():
            return directory / PROJECT_FILE
    return None


def load_project(path: Optional[Path]) -> Project:
    if path is None:
        return Project()
    from fastjsonschema import JsonSchemaException

    from .schema._project_validator import validate

    doc = load(path)
    try:
        validate(doc.data)
    except JsonSchemaException:
        # jsonschema only to say everything that is wrong, with lines
        schema = json.loads(resources.files("partman").joinpath("schema/project.schema.json").read_text())
        errors = schema_errors(doc, validator_for(schema))
        raise SpecError("\n".join(errors or [f"{path}:1: does not match the schema"])) from None
    if "state_schema" in doc.data:
        problem = identifier_problem(doc.data["state_schema"])  # the schema counts characters; the server, bytes
        if problem:
            raise SpecError(doc.problem(("state_schema",), problem))
    envs = {
        name: Environment(name, e.get("database"), e.get("database_url_env"), bool(e.get("protected", False)))
        for name, e in doc.data["environments"].items()
    }
    for env in envs.values():
        if env.database and env.database_url_env:
            raise SpecError(f"{doc.where(('environments', env.name))}: give either database or database_url_env, not both")
    return Project(path=path, environments=envs, state_schema=doc.data.get("state_schema", "public"))


def database_url(project: Project, env: str, cli_url: Optional[str]) -> Optional[str]:
    """The connection string to use, or None for an embedded server.

    --database-url wins, then PARTMAN_DATABASE_URL, then the project file; with none of them the empty
    string lets libpq's PG* variables decide."""
    if cli_url:
        return cli_url
    if os.environ.get("PARTMAN_DATABASE_URL"):
        return os.environ["PARTMAN_DATABASE_URL"]
    settings = project.environments.get(env)
    if settings is None:
        return ""
    if settings.database == "embedded":
        return None
    if settings.database_url_env:
        value = os.environ.get(settings.database_url_env)
        if not value:
            raise SpecError(f"environment '{env}': ${settings.database_url_env} is not set ({project.path})")
        return value
    return ""
