"""Helpers for tests/deploy.rs, run with the Python of the venv `cargo xtask setup` builds
(PyYAML, jsonschema and kubernetes-validate come from there).

  manifests.py yaml2json FILE
      The YAML documents of FILE as one JSON array on stdout (empty documents left out).
  manifests.py crd-validate SCHEMA KUBERNETES_VERSION FILE...
      Validates every monitoring.coreos.com object of FILE... against SCHEMA's $defs entry
      for its kind (strict: unknown fields fail), and its metadata against Kubernetes'
      ObjectMeta at KUBERNETES_VERSION, also strict. Prints one line per object; exits 1
      when any object fails, or when no object was checked at all.
"""

import json
import sys

import jsonschema
import kubernetes_validate
import yaml

GROUP = "monitoring.coreos.com/"


def documents(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def yaml2json(path):
    json.dump(documents(path), sys.stdout)


def where(error):
    return ".".join(str(p) for p in error.absolute_path) or "(top)"


def crd_validate(schema_path, version, paths):
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    failures = 0
    checked = 0
    for path in paths:
        for doc in documents(path):
            if not str(doc.get("apiVersion", "")).startswith(GROUP):
                continue
            kind = doc.get("kind")
            name = f"{path}: {kind}/{doc.get('metadata', {}).get('name')}"
            if kind not in schema["$defs"]:
                print(f"FAIL {name}: no schema for kind {kind}")
                failures += 1
                continue
            checked += 1
            validator = jsonschema.Draft202012Validator({"$ref": f"#/$defs/{kind}", "$defs": schema["$defs"]})
            errors = [f"{where(e)}: {e.message}" for e in validator.iter_errors(doc)]
            # ObjectMeta is the same for every kind: kubernetes-validate checks it as the
            # metadata of an otherwise empty ConfigMap.
            probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata", {})}
            try:
                kubernetes_validate.validate(probe, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{where(e)}: {e.message}")
            if kind == "PrometheusRule":
                names = [g.get("name") for g in doc.get("spec", {}).get("groups", [])]
                errors += [f"spec.groups: duplicate name {n}" for n in set(names) if names.count(n) > 1]
            if errors:
                failures += 1
                print(f"FAIL {name}")
                for error in errors:
                    print(f"  {error}")
            else:
                print(f"ok {name}")
    if checked == 0:
        print("FAIL no monitoring.coreos.com objects found")
        failures += 1
    return 1 if failures else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "yaml2json":
        yaml2json(argv[2])
        return 0
    if len(argv) >= 5 and argv[1] == "crd-validate":
        return crd_validate(argv[2], argv[3], argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
