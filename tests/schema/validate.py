"""Validates opsctl runbooks and inventories against the JSON Schemas `opsctl schema` prints,
with a JSON Schema validator other than opsctl (python-jsonschema, draft 2020-12), reading
YAML as opsctl does: YAML 1.2, where only true/false are booleans (`on`, `yes`, `off` are
strings, as yaml-language-server reads them too).

    python validate.py RUNBOOK_SCHEMA INVENTORY_SCHEMA FILE...

A file with `steps:` is a runbook, else an inventory. Prints `valid FILE` or `invalid FILE:
PATH: MESSAGE` per file; exits 1 when any is invalid."""
import json
import re
import sys

import jsonschema
import yaml


class Yaml12Loader(yaml.SafeLoader):
    pass


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def deepest(error):
    """The most specific reason: the deepest error under anyOf/oneOf."""
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return error


def main():
    runbook, inventory = (jsonschema.Draft202012Validator(json.load(open(p))) for p in sys.argv[1:3])
    bad = 0
    for path in sys.argv[3:]:
        doc = yaml.load(open(path), Loader=Yaml12Loader)
        validator = runbook if isinstance(doc, dict) and "steps" in doc else inventory
        errors = list(validator.iter_errors(doc))
        if errors:
            bad += 1
            e = deepest(errors[0])
            print(f"invalid {path}: /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
        else:
            print(f"valid {path}")
    sys.exit(1 if bad else 0)


main()
