"""Checks manifests against the CRD's openAPIV3Schema with an independent validator, so the
schema Schism generates and the examples it ships are known to agree outside our own code."""
import sys

import yaml
from openapi_schema_validator import OAS30Validator


def main(crd_path, manifests):
    with open(crd_path) as f:
        crds = [d for d in yaml.safe_load_all(f) if d]
    schemas = {}
    for crd in crds:
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = dict(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = schema
    failures = 0
    for path in manifests:
        with open(path) as f:
            for index, doc in enumerate(yaml.safe_load_all(f)):
                if not doc:
                    continue
                schema = schemas.get((doc.get("apiVersion"), doc.get("kind")))
                if schema is None:
                    print(f"{path}:{index}: no CRD for {doc.get('apiVersion')} {doc.get('kind')}")
                    failures += 1
                    continue
                body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
                for error in OAS30Validator(schema).iter_errors(body):
                    where = ".".join(str(p) for p in error.absolute_path)
                    print(f"{path}:{index}: {where}: {error.message}")
                    failures += 1
    print(f"{len(manifests)} file(s) checked against the CRD schema, {failures} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
