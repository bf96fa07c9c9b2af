"""Entry point of the policy pack: `pulumi preview --policy-pack policy` runs this file.

Only builds the PolicyPack (which starts the analyzer's gRPC server and blocks); the policies
live in policy/policies.py and policy/manifests.py (listed by policy/pack.py) so that tests can call them directly.
"""

import sys
from pathlib import Path

# The CLI runs this file from policy/; the repository root makes `policy.*` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policy.pack import all_policies  # noqa: E402

PolicyPack(
    name="homelab-observability",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=all_policies(),
)
