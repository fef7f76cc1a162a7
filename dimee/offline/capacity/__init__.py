"""Capacity planning (`dimee plan`, docs/operations.md "Past one machine"): from measured rates (`rates`), how
many instances of each role, how big their batches and how many partitions a target rate needs (`sizing`), and
that plan as values for the Helm chart in deploy/helm/dimee (`chart_values`)."""

from dimee.offline.capacity.chart_values import chart_values, write_values
from dimee.offline.capacity.rates import Rates, TierRate, from_cost_file, with_bench
from dimee.offline.capacity.sizing import Plan, RolePlan, Target, plan

__all__ = ["Plan", "Rates", "RolePlan", "Target", "TierRate", "chart_values", "from_cost_file", "plan",
           "with_bench", "write_values"]
