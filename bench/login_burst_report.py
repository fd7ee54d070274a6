"""The login burst's ``login_burst.md``: hit latency and RSS around the burst, login outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.workloads import HIT_PATH

CONTROL = "control-hits"
"""The variant every other one is compared with: a burst of cache hits, not logins."""


def markdown(runs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Login burst", "",
        f"{meta['started']}, `{meta['command']}`, commit `{meta['machine']['commit']}`; "
        f"{meta['seed']}.", "",
        f"The service (`python app.py`, Redis cache, a fresh redis-server per configuration) "
        f"serves `{HIT_PATH}` (cache hits) to wrk ({meta['threads']} connections, "
        f"{'paced to about %d requests/s' % meta['rate'] if meta['rate'] else 'unpaced'}) "
        f"throughout; after a {meta['baseline_s']:.0f} s baseline, {meta['logins']} connections "
        f"each send `POST /api/auth/login` for one seeded user at the same moment, every "
        f"{meta['wrong_every']}th with a wrong password.  Hit latency by when the request was "
        "sent: before the burst, during it (first login sent to last answered), in its first "
        "second (the same length for every variant, the control included) and after it.  "
        "RSS: the service's processes summed, sampled every 100 ms.", "",
        "| variant | workers | burst s | hit p50 before | p99 before | p50 during | p99 during "
        "| max during | p99 first 1 s | max first 1 s | p99 first 1 s / control's | p99 after "
        "| p99 during / before | hit non-2xx | RSS before MiB | RSS peak MiB | peak - before MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    control = {run["workers"]: run["windows"]["first_second"]["p99"] for run in runs
               if run["variant"] == CONTROL}
    for run in runs:
        w, r = run["windows"], run["rss_mib"]
        non_2xx = sum(x["non_2xx"] for x in w.values() if x is not w["first_second"])
        first = w["first_second"]
        lines.append(
            f"| {run['variant']} | {run['workers']} | {run['burst_seconds']:.1f} | "
            f"{w['before']['p50']:.2f} | "
            f"{w['before']['p99']:.2f} | {w['during']['p50']:.2f} | {w['during']['p99']:.2f} | "
            f"{w['during']['max']:.2f} | {first['p99']:.2f} | {first['max']:.2f} | "
            f"{_ratio(first['p99'], control.get(run['workers']))} | "
            f"{w['after']['p99']:.2f} | {run['p99_ratio']}x | "
            f"{non_2xx} | {r['before_mean']:.0f} | {r['peak_during']:.0f} | "
            f"{r['peak_minus_before']:.0f} |")
    lines += ["", "Login outcomes:", "",
              "| variant | workers | sent | by status | correct password | wrong password | 429 "
              "with Retry-After | Retry-After values | unexpected | login p50 ms | p99 ms | max "
              "ms |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        x = run["logins"]
        lat = x["latency_ms"]
        lines.append(
            f"| {run['variant']} | {run['workers']} | {x['sent']} | {_counts(x['by_status'])} | "
            f"{_counts(x['correct_password'])} | {_counts(x['wrong_password'])} | "
            f"{x['status_429_with_retry_after']} of {x['status_429']} | "
            f"{', '.join(x['retry_after_values']) or '-'} | {x['unexpected']} | "
            f"{lat['p50']:.0f} | {lat['p99']:.0f} | {lat['max']:.0f} |")
    lines += ["", "Unexpected: a correct password answered other than 200/429, or a wrong one "
              "other than 401/429.  `control-hits` sends no logins: the same 200 fresh "
              "connections each `GET " + HIT_PATH + "` (a cache hit), to show what 200 "
              "simultaneous new clients cost the hit route by themselves.", ""]
    for run in runs:
        lines.append(f"- {run['variant']}, {run['workers']} worker(s): settings: "
                     f"{run['settings'] or '(none about hashing or login limits)'}; "
                     f"requests per window: " + ", ".join(
                         f"{k} {v['requests']} ({v['rps']:.0f}/s)"
                         for k, v in run["windows"].items()) + f"; {run['warm']}.")
    lines += [f"- {note}" for note in meta["notes"]]
    return "\n".join(lines) + "\n"


def _ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "-"
