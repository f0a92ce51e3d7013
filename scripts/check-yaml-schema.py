#!/usr/bin/env python3
"""Validate YAML files against a JSON Schema with Python's jsonschema, independently of the
pipeline's own loader (the harness venv has jsonschema and PyYAML: scripts/cloud/install.sh).

    check-yaml-schema.py [--schema SCHEMA] FILE...

Without --schema, each file's schema is the one its first line names, as yaml-language-server
reads it (`# yaml-language-server: $schema=RELATIVE/PATH`), resolved against the file's
directory. Prints one JSON object per file on stdout:
    {"file": F, "schema": S, "result": "valid" | "invalid" | "unparseable", "errors": [...]}
Exits 0 when every file was checked (whatever the results), 2 on a usage error.
"""

import json
import os
import re
import sys

import jsonschema
import yaml

MODELINE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=(\S+)\s*$")


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML speaks YAML 1.1; the pipeline's loader (serde-saphyr) speaks 1.2. Without this,
    `provided_until: 2027-01-31` would become a date and `yes`/`no`/`on`/`off` booleans, and
    the schema would judge different values from the ones the pipeline reads."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag != "tag:yaml.org,2002:timestamp"
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for first in "yYnNoO":
    Yaml12Loader.yaml_implicit_resolvers[first] = [
        (tag, regexp)
        for tag, regexp in Yaml12Loader.yaml_implicit_resolvers.get(first, [])
        if tag != "tag:yaml.org,2002:bool"
    ]


def schema_of(path):
    with open(path, encoding="utf-8") as f:
        first = f.readline().rstrip("\n")
    match = MODELINE.match(first)
    if not match:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(path), match.group(1)))


def check(path, schema_path):
    result = {"file": path, "schema": schema_path, "errors": []}
    if schema_path is None:
        result["result"] = "invalid"
        result["errors"] = ["the first line names no schema (# yaml-language-server: $schema=…)"]
        return result
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.load(f, Loader=Yaml12Loader)
    except yaml.YAMLError as e:
        result["result"] = "unparseable"
        result["errors"] = [str(e)]
        return result
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    result["result"] = "invalid" if errors else "valid"
    result["errors"] = [
        "/".join(str(p) for p in e.absolute_path) + ": " + e.message for e in errors
    ]
    return result


def main(argv):
    schema = None
    if len(argv) >= 2 and argv[0] == "--schema":
        schema, argv = argv[1], argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for path in argv:
        print(json.dumps(check(path, schema if schema else schema_of(path))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
