"""Edits a compiled artifact the way a careless or hostile hand would, for
the faults suite.

    edit_artifact.py DIR [--keep-hashes] STATEMENT...

Each STATEMENT is Python run with `plan` (plan.json), `manifest`
(manifest.json) and `calls(kernel)` (the train step's calls of a kernel)
in scope. Afterwards the hashes are recomputed the way trlc computes them
(FNV-1a over the bytes; the manifest's identity fields dumped compactly
with sorted keys), so that the edit reaches the checks behind the hashes.
With --keep-hashes they are left as they were, to test the hashes
themselves.
"""
import json
import os
import sys

IDENTITY = ["format", "format_version", "recipe", "recipe_hash", "method", "model_type",
            "world_size", "batch_size", "sequence_bound", "parameters"]


def fnv1a(data: bytes) -> str:
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def identity_hash(manifest) -> str:
    ident = {k: manifest[k] for k in IDENTITY}
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return fnv1a(text.encode())


def main():
    args = sys.argv[1:]
    keep = "--keep-hashes" in args
    args = [a for a in args if a != "--keep-hashes"]
    root, statements = args[0], args[1:]
    plan_file = os.path.join(root, "plan.json")
    manifest_file = os.path.join(root, "manifest.json")
    with open(plan_file) as f:
        plan = json.load(f)
    with open(manifest_file) as f:
        manifest = json.load(f)
    # The hashes must match before the edit, or this helper is out of date.
    assert plan["manifest_hash"] == identity_hash(manifest), "identity hash recipe changed"
    with open(plan_file, "rb") as f:
        assert manifest["plan_hash"] == fnv1a(f.read()), "plan hash recipe changed"

    def calls(kernel):
        return [c for c in plan["programs"]["train_step"]["calls"] if c["kernel"] == kernel]

    import copy
    plan_before = copy.deepcopy(plan)
    for s in statements:
        exec(s, {"plan": plan, "manifest": manifest, "calls": calls})
    if not keep:
        plan["manifest_hash"] = identity_hash(manifest)
        for path in manifest.get("files", {}):
            with open(os.path.join(root, path), "rb") as f:
                manifest["files"][path] = fnv1a(f.read())
    if plan != plan_before or not keep:
        text = json.dumps(plan, indent=1).encode()
        with open(plan_file, "wb") as f:
            f.write(text)
    if not keep:
        manifest["plan_hash"] = fnv1a(text)
    with open(manifest_file, "w") as f:
        json.dump(manifest, f, indent=2)


if __name__ == "__main__":
    main()
