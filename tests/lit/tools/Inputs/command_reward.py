"""An external reward program: JSON lines in, {"rewards": [...]} out."""
import json
import sys

for line in sys.stdin:
    req = json.loads(line)
    # 1 when the completion has at least one digit, else 0
    rewards = [1.0 if any(ch.isdigit() for ch in c) else 0.0 for c in req["completions"]]
    sys.stdout.write(json.dumps({"rewards": rewards}) + "\n")
    sys.stdout.flush()
