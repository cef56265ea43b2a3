"""The session-wide fault report: one `ScenarioResult` per scenario, written as JSON to
`<PORTAL_VAR_DIR>/faults-report.json` and printed in pytest's terminal summary.

Figures (issue 11): faults injected, runs, states lost (goal 0), false claims (goal 0).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ScenarioResult:
    group: str                # the test (e.g. test_a_database_outage_during_apply_loses_no_state[5s])
    name: str                 # the scenario within it (a cancel test runs 20)
    faults: int = 0           # faults injected
    runs: int = 0             # Run rows of the environment(s) at the end
    states_lost: list[str] = field(default_factory=list)    # resources that exist but the stored state does not list
    false_claims: list[str] = field(default_factory=list)   # statuses / messages contradicting the stored state
    problems: list[str] = field(default_factory=list)       # any other broken invariant or unexpected outcome
    outcome: str = ""         # what happened, e.g. "create cancelled -> incomplete -> deleted"
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.states_lost or self.false_claims or self.problems)

    def summary(self) -> str:
        parts = []
        for label, items in (("STATE LOST", self.states_lost), ("FALSE CLAIM", self.false_claims), ("PROBLEM", self.problems)):
            parts.extend(f"{label}: {item}" for item in items)
        return f"{self.name}: {self.outcome}" + ("".join(f"\n    {p}" for p in parts) if parts else "")


class Report:
    def __init__(self):
        self.lock = threading.Lock()
        self.results: list[ScenarioResult] = []
        self.seed: int | None = None
        self.started = time.time()
        self.footprint_seen = False
        self.notes: dict = {}  # e.g. the stage lengths the cancel offsets were drawn from

    def add(self, result: ScenarioResult) -> ScenarioResult:
        with self.lock:
            self.results.append(result)
        return result

    def totals(self) -> dict:
        results = self.results
        return {
            "scenarios": len(results),
            "scenarios_failed": sum(not r.ok for r in results),
            "faults_injected": sum(r.faults for r in results),
            "runs": sum(r.runs for r in results),
            "states_lost": sum(bool(r.states_lost) for r in results),
            "false_claims": sum(len(r.false_claims) for r in results),
            "problems": sum(len(r.problems) for r in results),
        }

    def as_dict(self) -> dict:
        return {
            "seed": self.seed,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "footprint_seen": self.footprint_seen,
            "notes": self.notes,
            "totals": self.totals(),
            "groups": self.groups(),
            "scenarios": [asdict(r) for r in self.results],
        }

    def groups(self) -> dict:
        out: dict[str, dict] = {}
        for r in self.results:
            g = out.setdefault(r.group, {"scenarios": 0, "failed": 0, "faults": 0, "runs": 0,
                                         "states_lost": 0, "false_claims": 0, "problems": 0, "outcomes": {}})
            g["scenarios"] += 1
            g["failed"] += not r.ok
            g["faults"] += r.faults
            g["runs"] += r.runs
            g["states_lost"] += bool(r.states_lost)
            g["false_claims"] += len(r.false_claims)
            g["problems"] += len(r.problems)
            g["outcomes"][r.outcome] = g["outcomes"].get(r.outcome, 0) + 1
        return out

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")

    def lines(self, path: Path | None = None, max_failures: int = 40) -> list[str]:
        totals = self.totals()
        out = [
            f"seed {self.seed}; {totals['scenarios']} scenario(s), {totals['faults_injected']} fault(s) injected, "
            f"{totals['runs']} run(s); states lost {totals['states_lost']} (goal 0), false claims "
            f"{totals['false_claims']} (goal 0), other problems {totals['problems']}",
        ]
        if not self.footprint_seen and self.results:
            out.append("WARNING: no environment ever left a footprint under LOCAL_CLOUD_DIR, so a lost state "
                       "could not have been detected (is TF_VAR_footprint_dir passed to local runs?)")
        for key, value in self.notes.items():
            out.append(f"{key}: {value}")
        width = max((len(g) for g in self.groups()), default=10)
        out.append(f"{'test':<{width}}  scen fail fault runs lost claim probl")
        for group, g in self.groups().items():
            out.append(f"{group:<{width}}  {g['scenarios']:>4} {g['failed']:>4} {g['faults']:>5} {g['runs']:>4} "
                       f"{g['states_lost']:>4} {g['false_claims']:>5} {g['problems']:>5}")
        failed = [r for r in self.results if not r.ok]
        for r in failed[:max_failures]:
            out.append(f"[{r.group}] {r.summary()}")
        if len(failed) > max_failures:
            out.append(f"... and {len(failed) - max_failures} more failed scenario(s)")
        if path:
            out.append(f"full report: {path}")
        return out


REPORT = Report()
