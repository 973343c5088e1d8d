"""Checks that the chart's values.schema.json and values.yaml describe the same values.

Helm already refuses a values.yaml key the schema does not know (helm lint --strict, with
additionalProperties: false on the chart's objects). This checks the rest: every value has a
description, every object the chart defines forbids unknown keys, and the schema describes no
value that values.yaml does not have.

usage: check_values_schema.py CHART_DIR
Prints one line per problem and exits 1 when there is any.
"""
import json
import sys

import yaml

# Objects whose keys are the user's (maps, pod-spec objects) rather than the chart's.
FREE_FORM = {"#/definitions/resources"}
# Values an umbrella chart may pass; this chart reads none.
NOT_IN_VALUES = {"global"}


def resolve(schema, node):
    """The node behind a $ref, directly or through an allOf wrapper (draft-07 ignores a $ref's
    siblings, so a described reference is `{description, allOf: [{$ref}]}`), and the ref."""
    refs = [node.get("$ref")] + [n.get("$ref") for n in node.get("allOf", [])]
    ref = next((r for r in refs if r), None)
    if ref:
        target = schema
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return target, ref
    return node, None


def check(schema, node, values, path, problems):
    target, ref = resolve(schema, node)
    if path and not (node.get("description") or target.get("description")):
        problems.append(f"{path}: no description")
    properties = target.get("properties")
    if not properties or ref in FREE_FORM or not isinstance(values, dict):
        return
    if target.get("additionalProperties") is not False:
        problems.append(f"{path or '(top level)'}: the chart's object must set additionalProperties: false")
    for key, child in properties.items():
        where = f"{path}.{key}" if path else key
        if key not in values:
            if key not in NOT_IN_VALUES:
                problems.append(f"{where}: in the schema but not in values.yaml")
            continue
        check(schema, child, values[key], where, problems)


def main(chart_dir):
    with open(f"{chart_dir}/values.schema.json") as f:
        schema = json.load(f)
    with open(f"{chart_dir}/values.yaml") as f:
        values = yaml.safe_load(f)
    problems = []
    check(schema, schema, values, "", problems)
    for problem in problems:
        print(f"{chart_dir}/values.schema.json: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
