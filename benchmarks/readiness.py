"""How soon /readyz answers over real HTTP when the state store answers at once, and when it hangs (Redis
SIGSTOPped: every call blocks), one run, figures and their ratio. Prints, asserts nothing.

    python -m benchmarks.readiness [--probes 20]

The store is a stand-in with the check the router registers (a centroid snapshot), so no service is needed; the
hanging store blocks its first call until the run ends, as a paused Redis does until its socket timeout.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import urllib.error
import urllib.request

from dimee.streaming.health import Health, serve


def _probe_ms(port: int) -> float:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as response:
            response.read()
    except urllib.error.HTTPError as error:  # 503: not ready, answered
        error.read()
    return (time.perf_counter() - started) * 1000


def _measure(check, probes: int) -> list[float]:
    health = Health()
    health.beat("router")
    health.ready_stage("router")
    health.needs("centroid store", check)
    server = serve("127.0.0.1", 0, health)
    try:
        return [_probe_ms(server.server_port) for _ in range(probes)]
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=20, help="probes per case (default 20)")
    args = parser.parse_args()
    released = threading.Event()

    def hanging() -> str | None:
        released.wait()
        return None

    answering = _measure(lambda: None, args.probes)
    try:
        paused = _measure(hanging, args.probes)
    finally:
        released.set()
    for name, figures in (("store answering", answering), ("store hanging", paused)):
        print(f"/readyz, {name}: median {statistics.median(figures):.1f} ms, max {max(figures):.1f} ms "
              f"over {len(figures)} probes")
    print(f"hanging / answering, median: {statistics.median(paused) / statistics.median(answering):.1f}x "
          f"(a probe waits at most Health.answer_within_s = {Health().answer_within_s} s for a check in flight)")


if __name__ == "__main__":
    main()
